"""Tiny stand-ins of the zoo's Dash checkpoints: the same diffusers classes and directory
layouts as the real ones (pipeline sub-folders, VQ / KL autoencoders, CLIP text encoders and
tokenizers), random weights, built from small configs and saved with ``save_pretrained``.

``STANDINS[model]`` writes a stand-in for ``conf/model/<model>.yaml`` under a directory and
returns the overrides that point the model config at it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UNet2DConditionModel,
    UNet2DModel,
    VQModel,
)
from helpers import tiny_unet
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

SIZE = 8  # sample size (pixels, or latents of a 2x autoencoder)
TEXT_LENGTH = 16  # tokenizer max length


def pixel_unet(channels: int = 3, num_class_embeds: int | None = None) -> UNet2DModel:
    """:func:`helpers.tiny_unet` at 32/64 channels (room for the 32 norm groups of the large Dots)."""
    return tiny_unet(SIZE, channels, widths=(32, 64), num_class_embeds=num_class_embeds)


def text_unet(cross_attention_dim: int, pooled_dim: int | None = None) -> UNet2DConditionModel:
    """SD-style conditional UNet; with ``pooled_dim``, SDXL's text_time added conditioning."""
    torch.manual_seed(0)
    sdxl = {} if pooled_dim is None else {
        "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + pooled_dim,
    }
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
        attention_head_dim=8, cross_attention_dim=cross_attention_dim, **sdxl,
    )


def autoencoder(kind: str, latent_channels: int) -> VQModel | AutoencoderKL:
    """A 2x-downsampling VQ or KL autoencoder on RGB images."""
    torch.manual_seed(0)
    common = {
        "in_channels": 3, "out_channels": 3, "block_out_channels": (8, 8), "layers_per_block": 1,
        "latent_channels": latent_channels, "norm_num_groups": 4,
        "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2,
    }
    if kind == "vq":
        return VQModel(**common, num_vq_embeddings=16)
    return AutoencoderKL(**common, sample_size=2 * SIZE, scaling_factor=0.5)


def text_encoder(hidden: int, projection_dim: int | None = None) -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=TEXT_LENGTH, bos_token_id=512,
        eos_token_id=513, pad_token_id=513, projection_dim=projection_dim or hidden,
    )
    return (CLIPTextModelWithProjection if projection_dim else CLIPTextModel)(config)


def tokenizer(scratch: Path) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer without merges: every character is a token."""
    codes = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes += [256 + k for k in range(256 - len(codes))]
    chars = [chr(c) for c in codes]
    vocab = {token: index for index, token in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "vocab.json").write_text(json.dumps(vocab))
    (scratch / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=str(scratch / "vocab.json"), merges=str(scratch / "merges.txt"),
                         model_max_length=TEXT_LENGTH)


def save_pipeline(root: Path, class_name: str, components: dict[str, Any], **index: Any) -> Path:
    """Each component in its sub-folder (``save_pretrained`` / ``save_config``) + model_index.json."""
    entries = {}
    for name, component in components.items():
        if hasattr(component, "save_pretrained"):
            component.save_pretrained(root / name)
        else:
            component.save_config(root / name)
        library = "transformers" if type(component).__module__.startswith("transformers") else "diffusers"
        entries[name] = [library, type(component).__name__]
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name, **entries, **index}))
    return root


def _ddpm_pipeline(root: Path) -> list[str]:
    save_pipeline(root, "DDPMPipeline", {"unet": pixel_unet(), "scheduler": DDPMScheduler()})
    return [f"model.pretrained={root}"]


def _bare_unet(root: Path, num_class_embeds: int | None = None) -> list[str]:
    pixel_unet(num_class_embeds=num_class_embeds).save_pretrained(root)
    DDPMScheduler().save_config(root)
    return [f"model.pretrained={root}"]


def _ldm_cifar(root: Path) -> list[str]:
    save_pipeline(root, "LDMPipeline", {
        "unet": pixel_unet(channels=4), "vae": autoencoder("kl", 4), "scheduler": DDPMScheduler(),
    })
    return [f"model.pretrained={root}"]


def _ldm_celebahq(root: Path) -> list[str]:
    save_pipeline(root, "LDMPipeline", {
        "unet": pixel_unet(channels=3), "vqvae": autoencoder("vq", 3),
        "scheduler": DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195),
    })
    return [f"model.pretrained={root}"]


def _sd14(root: Path) -> list[str]:
    save_pipeline(root, "StableDiffusionPipeline", {
        "unet": text_unet(cross_attention_dim=32), "vae": autoencoder("kl", 4),
        "text_encoder": text_encoder(32), "tokenizer": tokenizer(root / "scratch"),
        "scheduler": PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   skip_prk_steps=True, steps_offset=1),
    }, requires_safety_checker=False)
    return [f"model.pretrained={root}"]


def _lcm_sdxl(root: Path) -> list[str]:
    """The distilled UNet alone, plus an SDXL base pipeline for every other component."""
    text_unet(cross_attention_dim=32 + 16, pooled_dim=8).save_pretrained(root / "lcm_unet")
    save_pipeline(root / "sdxl_base", "StableDiffusionXLPipeline", {
        "vae": autoencoder("kl", 4),
        "text_encoder": text_encoder(32), "tokenizer": tokenizer(root / "scratch"),
        "text_encoder_2": text_encoder(16, projection_dim=8), "tokenizer_2": tokenizer(root / "scratch"),
        "scheduler": EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                            beta_end=0.012, steps_offset=1, timestep_spacing="leading"),
    }, force_zeros_for_empty_prompt=True)
    return [f"model.pretrained={root / 'lcm_unet'}", f"model.base_pipeline={root / 'sdxl_base'}"]


STANDINS: dict[str, Callable[[Path], list[str]]] = {
    "ddpm_cifar10": _ddpm_pipeline,
    "ddpm_church256": _ddpm_pipeline,
    "ddim_celeba64": _bare_unet,
    "adm_imagenet64": lambda root: _bare_unet(root, num_class_embeds=10),
    "ldm_cifar": _ldm_cifar,
    "ldm_celebahq256": _ldm_celebahq,
    "sd14": _sd14,
    "lcm_sdxl": _lcm_sdxl,
}


def clip_model(root: Path) -> Path:
    """A tiny CLIPModel + CLIPProcessor (16 px images) saved where ``ClipScore`` loads them."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    text = text_encoder(32).config.to_dict()
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 16, "patch_size": 8}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(root)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer(root / "scratch"),
    )
    processor.save_pretrained(root)
    return root


def coco_folder(root: Path, count: int = 80, size: int = 16) -> Path:
    """``count`` random images with one caption each, in COCO's val2014 layout."""
    import numpy as np
    from PIL import Image

    (root / "val2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue", "yellow"]
    images, annotations = [], []
    for image_id in range(1, count + 1):
        name = f"COCO_val2014_{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "val2014" / name)
        images.append({"id": image_id, "file_name": name})
        annotations.append({"id": image_id, "image_id": image_id, "caption": f"a {colours[image_id % 4]} square"})
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root
