"""Plain DDPM training of a Dash (with EMA), for datasets that have no public checkpoint.

The recipe of Ho et al. (2020): x_t = add_noise(x_0, eps, t) with t uniform over the
training timesteps, loss = MSE(unet(x_t, t), eps), AdamW with linear warm-up, EMA of the
weights. The EMA weights are what gets saved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from torch import nn


class DashPretraining(L.LightningModule):
    """DDPM training of ``unet`` under ``noise_scheduler``'s forward process.

    Args:
        unet: the denoiser to train (predicts eps).
        noise_scheduler: defines betas / the forward process; saved beside the weights.
        lr: peak AdamW learning rate; warmup_steps: linear warm-up length.
        ema_decay: EMA decay of the saved weights.
    """

    def __init__(
        self,
        unet: UNet2DModel,
        noise_scheduler: DDPMScheduler,
        lr: float = 5e-4,
        warmup_steps: int = 200,
        ema_decay: float = 0.999,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.noise_scheduler = noise_scheduler
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.ema = EMAModel(unet.parameters(), decay=ema_decay)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch[0]
        noise = torch.randn_like(images)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(images),),
                          device=images.device)
        noisy = self.noise_scheduler.add_noise(images, noise, t)
        loss = nn.functional.mse_loss(self.unet(noisy, t).sample, noise)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, *args: Any) -> None:
        self.ema.step(self.unet.parameters())

    def on_fit_start(self) -> None:
        self.ema.to(self.device)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.unet.parameters(), lr=self.lr, weight_decay=0.0)
        warmup = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(1, self.warmup_steps))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().state_dict(*args, **kwargs)
        state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, **kwargs: Any) -> Any:
        ema_state = state.pop("ema", None)
        if ema_state is not None:
            self.ema.load_state_dict(ema_state)
        return super().load_state_dict(state, strict=strict, **kwargs)

    def ema_unet(self) -> UNet2DModel:
        """A copy of the UNet carrying the EMA weights."""
        unet = UNet2DModel.from_config(self.unet.config)
        unet.load_state_dict(self.unet.state_dict())
        self.ema.copy_to(unet.parameters())
        return unet.eval()


def save_dash_dir(
    unet: UNet2DModel, noise_scheduler: DDPMScheduler, directory: str | Path,
    provenance: dict[str, Any],
) -> Path:
    """Write a bare-model Dash directory (safetensors + configs + provenance.json) atomically.

    The directory is first written beside its destination and moved into place only when
    complete, so an interrupted save never leaves a half-written Dash.
    """
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    unet.save_pretrained(staging, safe_serialization=True)
    noise_scheduler.save_config(staging)
    (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return directory
