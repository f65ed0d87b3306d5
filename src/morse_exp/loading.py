"""Load a Dash through diffusers' own loading code, with one-line errors for the usual failures.

``pretrained`` is a hub id (``google/ddpm-cifar10-32``) or a local directory in diffusers
format: either a bare model directory (``config.json`` + weights, optionally
``scheduler_config.json``) or a pipeline directory (``model_index.json`` with ``unet/``,
``scheduler/`` and optionally ``vae/`` or ``vqvae/``, ``text_encoder/`` + ``tokenizer/``, and
for SDXL ``text_encoder_2/`` + ``tokenizer_2/``). A UNet published alone (LCM-SDXL) takes the
other components from ``base_pipeline``, the pipeline it was distilled from.
Weights load as safetensors where present; pickled ``.bin`` files load with
``weights_only=True`` (diffusers' default); remote code is never trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diffusers

from morse_exp.conditioning import PromptEncoder
from morse_exp.dash import Dash

DENOISER_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
AUTOENCODER_FOLDERS = {"vqvae": "VQModel", "vae": "AutoencoderKL"}
DEFAULT_SCHEDULER_CONFIG = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000}


class DashLoadError(RuntimeError):
    """A Dash checkpoint is missing, unreachable or unreadable (message is one line)."""


def load_dash(
    pretrained: str, prediction_type: str | None = None, base_pipeline: str | None = None
) -> Dash:
    """Load a frozen Dash from a hub id or a local diffusers-format directory.

    Args:
        pretrained: hub id or directory of the Dash (a pipeline or a bare UNet).
        prediction_type: what the UNet predicts; default: its scheduler config's.
        base_pipeline: hub id or pipeline directory that supplies every component except the
            UNet (scheduler, autoencoder, text encoders), for a UNet published alone.

    Raises:
        DashLoadError: with one line naming the path and what to do, when the weights are
            absent (offline hub id, empty directory) or unreadable (corrupted file).
    """
    root = _resolve(pretrained, "model.pretrained")
    if base_pipeline is not None:
        unet = load_model(root, "unet" if (root / "unet").is_dir() else None, pretrained)
        base = _resolve(base_pipeline, "model.base_pipeline")
        if not (base / "model_index.json").is_file():
            raise DashLoadError(f"model.base_pipeline={base_pipeline} is not a pipeline directory "
                                "(no model_index.json)")
        return _load_pipeline_dir(base, pretrained, prediction_type, unet=unet)
    if (root / "model_index.json").is_file():
        return _load_pipeline_dir(root, pretrained, prediction_type)
    if (root / "config.json").is_file():
        unet = load_model(root, None, pretrained)
        scheduler_config = _read_json(root / "scheduler_config.json", DEFAULT_SCHEDULER_CONFIG)
        return Dash(unet, scheduler_config, prediction_type, source=pretrained)
    raise DashLoadError(
        f"no diffusers model in {root}: expected model_index.json (pipeline directory) or "
        "config.json (model directory)"
    )


def _resolve(pretrained: str, setting: str) -> Path:
    """A local directory for ``pretrained`` (the value of ``setting``): itself, or a hub
    snapshot (cache or download)."""
    path = Path(pretrained).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DashLoadError(f"{setting}={pretrained} is a file: give its directory")
        return path
    if pretrained.startswith((".", "/", "~")) or pretrained.count("/") != 1:
        raise DashLoadError(
            f"{setting}={pretrained} does not exist: point {setting} at a local "
            "diffusers directory or a hub id like owner/name, or train a Dash with "
            "`python -m morse_exp.pretrain`"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                pretrained,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*/*.json",
                                "*/*.txt", "*/*.safetensors", "*/*.model"],
            )
        )
    except Exception as error:  # offline, unknown repo, gated repo: all end the same way
        raise DashLoadError(
            f"cannot fetch Dash weights {pretrained!r} ({type(error).__name__}): this machine "
            f"is offline or the id is wrong; point {setting}=/path/to/local/copy at a "
            "diffusers directory, or train one with `python -m morse_exp.pretrain`"
        ) from error


def _load_pipeline_dir(
    root: Path, pretrained: str, prediction_type: str | None, unet: Any = None
) -> Dash:
    """A Dash from a pipeline directory (``unet`` given: every component but the UNet)."""
    if unet is None:
        if not (root / "unet" / "config.json").is_file():
            raise DashLoadError(f"pipeline directory {root} has no unet/config.json")
        unet = load_model(root, "unet", pretrained)
    scheduler_config = _read_json(
        root / "scheduler" / "scheduler_config.json", DEFAULT_SCHEDULER_CONFIG
    )
    folder = autoencoder_folder(root)
    autoencoder = load_model(root, folder, pretrained) if folder else None
    scaling = latent_scaling(autoencoder)
    return Dash(
        unet,
        scheduler_config,
        prediction_type,
        autoencoder=autoencoder,
        latent_scaling=scaling,
        prompt_encoder=_load_prompt_encoder(root, unet, autoencoder),
        source=pretrained,
    )


def autoencoder_folder(root: Path) -> str | None:
    """The pipeline sub-folder of ``root`` holding an autoencoder (``vqvae`` or ``vae``), if any."""
    return next((folder for folder in AUTOENCODER_FOLDERS if (root / folder / "config.json").is_file()), None)


def latent_scaling(autoencoder: Any) -> float:
    """An autoencoder's latent scaling factor (latents = encoder output * factor); 1 without one."""
    if autoencoder is None:
        return 1.0
    return float(getattr(autoencoder.config, "scaling_factor", None) or 1.0)


def load_model(root: Path, subfolder: str | None, pretrained: str) -> Any:
    """A diffusers model of the class its config names, loaded by diffusers."""
    config_path = root / (subfolder or "") / "config.json"
    class_name = _read_json(config_path, {}).get("_class_name")
    allowed = DENOISER_CLASSES if subfolder in (None, "unet") else tuple(AUTOENCODER_FOLDERS.values())
    if class_name not in allowed:
        raise DashLoadError(
            f"{config_path} names class {class_name!r}: supported here are {', '.join(allowed)}"
        )
    model_class = getattr(diffusers, class_name)
    try:
        return model_class.from_pretrained(root, subfolder=subfolder, local_files_only=True)
    except Exception as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DashLoadError(
            f"cannot load {class_name} weights from {root / (subfolder or '')}: {detail}"
        ) from error


def _load_prompt_encoder(root: Path, unet: Any, autoencoder: Any) -> PromptEncoder | None:
    """The pipeline's CLIP text encoder(s) and tokenizer(s) as a PromptEncoder, if it has them."""
    if not (root / "text_encoder" / "config.json").is_file():
        return None
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folders = [("text_encoder", "tokenizer", CLIPTextModel)]
    if (root / "text_encoder_2" / "config.json").is_file():
        folders.append(("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection))
    try:
        encoders = [cls.from_pretrained(root / enc, local_files_only=True) for enc, _, cls in folders]
        tokenizers = [CLIPTokenizer.from_pretrained(root / tok, local_files_only=True) for _, tok, _ in folders]
    except Exception as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DashLoadError(f"cannot load the text encoder(s) in {root}: {detail}") from error
    index = _read_json(root / "model_index.json", {})
    upscale = 2 ** (len(autoencoder.config.block_out_channels) - 1) if autoencoder is not None else 1
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return PromptEncoder(
        encoders, tokenizers, image_size=(height * upscale, width * upscale),
        zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", False)),
    )


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    if not path.is_file():
        return dict(default)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DashLoadError(f"{path} is not valid JSON: {error}") from error
