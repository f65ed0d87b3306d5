"""Plain DDPM training of a Dash (with EMA), for datasets that have no public checkpoint.

The recipe of Ho et al. (2020): x_t = add_noise(x_0, eps, t) with t uniform over the
training timesteps, loss = MSE(unet(x_t, t), eps), AdamW with linear warm-up, EMA of the
weights. The EMA weights are what gets saved.

Latent Dash: given a frozen autoencoder (diffusers ``AutoencoderKL`` or ``VQModel``), x_0 is
``Dash.encode(images)``, the scaled latents ``encode(images) * scaling_factor`` (for a KL
autoencoder the posterior's mode, so every image has one deterministic latent, the same one
Dash.encode gives the Dot trainer later), and the result is a diffusers pipeline directory
with the autoencoder copied in.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import diffusers
import lightning as L
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from torch import nn

from morse_exp.atomic import staged_directory
from morse_exp.dash import Dash
from morse_exp.loading import AUTOENCODER_FOLDERS, autoencoder_folder, latent_scaling, load_dash, load_model


def lr_factor(step: int, warmup_steps: int, total_steps: int, anneal_steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up over
    ``warmup_steps``, then 1, then a linear decay to 0 over the last ``anneal_steps`` of
    ``total_steps``."""
    factor = min(1.0, (step + 1) / max(1, warmup_steps))
    if anneal_steps:
        factor *= min(1.0, max(0.0, (total_steps - step) / anneal_steps))
    return factor


class DashPretraining(L.LightningModule):
    """DDPM training of ``unet`` under ``noise_scheduler``'s forward process.

    Args:
        unet: the denoiser to train (predicts eps).
        noise_scheduler: defines betas / the forward process; saved beside the weights.
        lr: peak AdamW learning rate; warmup_steps: linear warm-up length.
        anneal_steps: the last ``anneal_steps`` of ``trainer.max_steps`` decay the learning
            rate linearly to 0 (warm-up, constant, decay); 0 keeps it constant to the end.
        ema_decay: EMA decay of the saved weights.
        autoencoder: for a latent Dash, the frozen autoencoder whose scaled latents ``unet``
            learns (see :func:`load_autoencoder`); None trains on pixels.
        init_steps: training steps ``unet``'s weights already had (``init_from``); kept in
            the checkpoints, so a resumed run still counts them.
        history: the runs that trained it, ending with this one (:func:`training_history`);
            kept in the checkpoints, so a resumed run extends it.

    ``self.dash`` is the Dash being made: a frozen copy of ``unet`` that receives the EMA
    weights (:meth:`ema_dash`) and the autoencoder. It encodes every batch and is left out of
    Lightning checkpoints (it is rebuilt from the config).
    """

    def __init__(
        self,
        unet: UNet2DModel,
        noise_scheduler: DDPMScheduler,
        lr: float = 5e-4,
        warmup_steps: int = 200,
        ema_decay: float = 0.999,
        autoencoder: nn.Module | None = None,
        init_steps: int = 0,
        anneal_steps: int = 0,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if anneal_steps < 0:
            raise ValueError(f"pretraining.anneal_steps={anneal_steps} is invalid: use 0 (constant rate) or a positive number of steps")
        self.anneal_steps = anneal_steps
        self.unet = unet
        self.init_steps = init_steps
        self.history = list(history or [])
        self.noise_scheduler = noise_scheduler
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.ema = EMAModel(unet.parameters(), decay=ema_decay)
        self.dash = Dash(
            copy.deepcopy(unet), dict(noise_scheduler.config), autoencoder=autoencoder,
            latent_scaling=latent_scaling(autoencoder),
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0 = self.dash.encode(batch[0])
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(x0),),
                          device=x0.device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        loss = nn.functional.mse_loss(self.unet(noisy, t).sample, noise)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, *args: Any) -> None:
        self.ema.step(self.unet.parameters())

    def on_fit_start(self) -> None:
        self.ema.to(self.device)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.unet.parameters(), lr=self.lr, weight_decay=0.0)
        total = self.trainer.max_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.warmup_steps, total, self.anneal_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("dash.")}
        state["ema"] = self.ema.state_dict()
        state["init_steps"] = self.init_steps
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, **kwargs: Any) -> Any:
        ema_state = state.pop("ema", None)
        if ema_state is not None:
            self.ema.load_state_dict(ema_state)
        self.init_steps = int(state.pop("init_steps", 0))
        state = {**{f"dash.{k}": v for k, v in self.dash.state_dict().items()}, **state}
        return super().load_state_dict(state, strict=strict, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["history"] = self.history

    def ema_dash(self) -> Dash:
        """``self.dash`` with the EMA weights copied into its UNet."""
        self.dash.unet.load_state_dict(self.unet.state_dict())
        self.ema.copy_to(self.dash.unet.parameters())
        return self.dash


def load_autoencoder(path: str) -> nn.Module:
    """The ``AutoencoderKL`` or ``VQModel`` in ``path``: its own diffusers directory
    (``config.json`` + weights) or a pipeline directory's ``vae/`` or ``vqvae/``.

    Raises (one line): FileNotFoundError if there is none; DashLoadError if the config
    names another class or the weights are unreadable.
    """
    root = Path(path).expanduser().resolve()
    folder = root / (autoencoder_folder(root) or "")
    if not (folder / "config.json").is_file():
        problem = "has no config.json, vae/ or vqvae/" if root.is_dir() else "is not a directory"
        raise FileNotFoundError(
            f"autoencoder={path} {problem}: give a diffusers AutoencoderKL or VQModel "
            "directory (config.json + weights), or a pipeline directory with vae/ or vqvae/"
        )
    return load_model(folder.parent, folder.name, str(path))


def load_init_weights(unet: UNet2DModel, init_from: str) -> int:
    """Copy the UNet weights of the Dash directory ``init_from`` into ``unet``; returns the
    training steps its provenance.json records (0 if it records none).

    Raises (one line): DashLoadError if the directory holds no loadable Dash; ValueError if
    its UNet is not of ``unet``'s architecture (names the first parameters that differ).
    """
    source = load_dash(init_from).unet
    ours, theirs = unet.state_dict(), source.state_dict()
    differ = sorted(k for k in ours.keys() | theirs.keys()
                    if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if type(source) is not type(unet) or differ:
        detail = (f"{len(differ)} parameters differ, e.g. {', '.join(differ[:2])}" if differ
                  else f"a {type(source).__name__}, not a {type(unet).__name__}")
        raise ValueError(
            f"init_from={init_from} does not hold the configured architecture ({detail}): "
            "give the architecture= it was trained with"
        )
    unet.load_state_dict(theirs)
    provenance = Path(init_from) / "provenance.json"
    return int(json.loads(provenance.read_text()).get("steps", 0)) if provenance.is_file() else 0


def training_history(
    command: str, checkpoint: dict[str, Any] | None, init_from: str | None, init_steps: int
) -> list[dict[str, Any]]:
    """The runs that trained a Dash, oldest first, ending with this one (``command``):
    ``{"from_step": int, "command": str}`` each; a run trained from its ``from_step`` up to
    the next run's (the last one: up to the Dash's ``steps``).

    A run resumed from ``checkpoint`` (a loaded Lightning checkpoint) extends the history the
    checkpoint carries; one continued from the saved Dash ``init_from`` (``init_steps``
    steps) extends the history in its provenance.json, or, where that records none, its
    ``command`` from step 0.
    """
    if checkpoint is not None:
        earlier = checkpoint.get("history", [])
        start = checkpoint["global_step"] + int(checkpoint["state_dict"].get("init_steps", 0))
    elif init_from:
        provenance = Path(init_from) / "provenance.json"
        record = json.loads(provenance.read_text()) if provenance.is_file() else {}
        earlier = record.get("history") or ([{"from_step": 0, "command": record["command"]}] if "command" in record else [])
        start = init_steps
    else:
        earlier, start = [], 0
    return [*earlier, {"from_step": start, "command": command}]


def check_sample_shape(dash: Dash, image_shape: tuple[int, int, int]) -> None:
    """Raise a one-line ValueError, naming the overrides that fix it, unless ``dash``'s UNet
    takes and returns what it is trained on: the images, or their autoencoder latents."""
    autoencoder, config = dash.autoencoder, dash.unet.config
    if autoencoder is not None and autoencoder.config.in_channels != image_shape[0]:
        raise ValueError(
            f"the autoencoder takes {autoencoder.config.in_channels}-channel images but the "
            f"dataset's images have shape {tuple(image_shape)}: give an autoencoder for them"
        )
    param = next(dash.parameters())
    target = tuple(dash.encode(torch.zeros(1, *image_shape, dtype=param.dtype, device=param.device)).shape[1:])
    fixes = [f"architecture.{key}={target[0]}" for key in ("in_channels", "out_channels")
             if config[key] != target[0]]
    if dash.sample_shape[1:] != target[1:]:
        size = target[1] if target[1] == target[2] else list(target[1:])
        fixes.append(f"architecture.sample_size={size}".replace(" ", ""))
    if fixes:
        trained_on = "the autoencoder's latents" if autoencoder is not None else "the dataset's images"
        raise ValueError(
            f"the UNet takes samples of shape {dash.sample_shape} (out_channels "
            f"{config.out_channels}) but {trained_on} have shape {target}: set {' '.join(fixes)}"
        )


def save_dash_dir(
    unet: UNet2DModel, noise_scheduler: DDPMScheduler, directory: str | Path,
    provenance: dict[str, Any], autoencoder: nn.Module | None = None,
) -> Path:
    """Write a Dash directory (safetensors + configs + provenance.json) atomically.

    Pixel Dash: the bare-model layout (config.json, weights, scheduler_config.json). Latent
    Dash: a pipeline directory (model_index.json, unet/, scheduler/, and vae/ or vqvae/ with
    the autoencoder, its scaling factor in its config). The directory is first written
    beside its destination and moved into place only when complete, so an interrupted save
    never leaves a half-written Dash.
    """
    directory = Path(directory)
    with staged_directory(directory) as staging:
        if autoencoder is None:
            unet.save_pretrained(staging, safe_serialization=True)
            noise_scheduler.save_config(staging)
        else:
            class_name = type(autoencoder).__name__
            folder = {cls: name for name, cls in AUTOENCODER_FOLDERS.items()}[class_name]
            unet.save_pretrained(staging / "unet", safe_serialization=True)
            noise_scheduler.save_pretrained(staging / "scheduler")
            autoencoder.save_pretrained(staging / folder, safe_serialization=True)
            index = {
                # diffusers' LDMPipeline loads the VQ layout; it has no pipeline for a KL one
                "_class_name": "LDMPipeline" if folder == "vqvae" else "DiffusionPipeline",
                "_diffusers_version": diffusers.__version__,
                "unet": ["diffusers", type(unet).__name__],
                "scheduler": ["diffusers", type(noise_scheduler).__name__],
                folder: ["diffusers", class_name],
            }
            (staging / "model_index.json").write_text(json.dumps(index, indent=2))
        (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
    return directory
