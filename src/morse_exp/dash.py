"""Dash: any frozen diffusers denoiser behind one contract, ``dash(x, t, cond) -> eps``.

The sampler and Dot never see a model's own output class or parameterisation: Dash converts
v- and x0-predictions into a noise estimate with the alphas of the model's own training
scheduler (diffusers' ``DDPMScheduler`` built from its config, never re-derived here).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class Dash(nn.Module):
    """A frozen pretrained diffusion model that returns a noise estimate.

    Args:
        unet: a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.
        scheduler_config: the model's training scheduler config (betas, timesteps,
            prediction type); sampling schedulers are built from it.
        prediction_type: what ``unet`` predicts; default: ``scheduler_config``'s, else epsilon.
        autoencoder: for latent models, the VAE/VQ model that decodes samples to pixels.
        latent_scaling: the autoencoder's scaling factor (latents = encoder output * factor).
        text_encoder, tokenizer: for text-conditioned models (kept for prompt encoding).
        source: where the weights came from (hub id or directory), for records and errors.

    The denoiser's parameters are frozen (``requires_grad=False``) and the module stays in
    eval mode whatever ``train()`` is called with.
    """

    def __init__(
        self,
        unet: nn.Module,
        scheduler_config: dict[str, Any],
        prediction_type: str | None = None,
        autoencoder: nn.Module | None = None,
        latent_scaling: float = 1.0,
        text_encoder: nn.Module | None = None,
        tokenizer: Any = None,
        source: str = "<in memory>",
    ) -> None:
        super().__init__()
        prediction_type = prediction_type or scheduler_config.get("prediction_type") or "epsilon"
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type {prediction_type!r} is not supported: use one of {PREDICTION_TYPES}"
            )
        self.unet = unet
        self.autoencoder = autoencoder
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.latent_scaling = float(latent_scaling)
        self.prediction_type = prediction_type
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        training_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.register_buffer(
            "alphas_cumprod", training_scheduler.alphas_cumprod.clone().float(), persistent=False
        )
        for module in (unet, autoencoder, text_encoder):
            if module is not None:
                module.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Dash:
        """Dash is frozen: it stays in eval mode (dropout off) whatever ``mode`` says."""
        return super().train(False)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the samples the denoiser works on (latents if latent)."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, height, width)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def forward(self, x: Tensor, t: Tensor | float, cond: dict[str, Any] | None = None) -> Tensor:
        """Noise estimate.

        Args:
            x: (B, C, H, W) model input (already passed through ``scale_model_input``).
            t: scalar or (B,) training-scale timesteps (0..T-1, may be fractional).
            cond: keyword arguments for the denoiser (``encoder_hidden_states``,
                ``added_cond_kwargs``, ``class_labels``), batch-aligned with ``x``.

        Returns:
            (B, C, H, W) noise estimate eps, in ``x``'s dtype.
        """
        t = _timestep_batch(t, x)
        output = self.unet(x, t, **(cond or {})).sample
        return self.to_eps(output, x, t)

    def to_eps(self, output: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """Convert a raw denoiser output of ``self.prediction_type`` into a noise estimate."""
        if self.prediction_type == "epsilon":
            return output
        alpha_bar = self.alpha_bar(t).to(x.dtype).view(-1, 1, 1, 1)
        signal, noise = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        if self.prediction_type == "v_prediction":
            return signal * output + noise * x
        return (x - signal * output) / noise

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar(t) of the training schedule; linear interpolation for fractional t."""
        t = t.float().clamp(0, self.num_train_timesteps - 1).to(self.alphas_cumprod.device)
        low = t.floor().long()
        high = (low + 1).clamp(max=self.num_train_timesteps - 1)
        frac = t - low
        return (1 - frac) * self.alphas_cumprod[low] + frac * self.alphas_cumprod[high]

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] -> samples in the model's space (scaled latents if latent)."""
        if self.autoencoder is None:
            return images
        encoded = self.autoencoder.encode(images)
        latents = encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latents
        return latents * self.latent_scaling

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        """Samples in the model's space -> images in [-1, 1], (B, 3 or C, H', W')."""
        if self.autoencoder is None:
            return x
        return self.autoencoder.decode(x / self.latent_scaling).sample


def _timestep_batch(t: Tensor | float, x: Tensor) -> Tensor:
    """A (B,) timestep tensor on ``x``'s device from a scalar or (B,) input."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t
