"""Dash: any frozen diffusers denoiser behind one contract, ``dash(x, t, cond) -> eps``.

The sampler and Dot never see a model's own output class or parameterisation: Dash converts
v- and x0-predictions into a noise estimate with the alphas of the model's own training
scheduler (diffusers' ``DDPMScheduler`` built from its config, never re-derived here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from morse_exp.conditioning import PromptEncoder

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
        prompt_encoder: for text-conditioned models, prompts -> denoiser keyword arguments.
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
        prompt_encoder: PromptEncoder | None = None,
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
        self.prompt_encoder = prompt_encoder
        self.latent_scaling = float(latent_scaling)
        self.prediction_type = prediction_type
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        training_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.register_buffer(
            "alphas_cumprod", training_scheduler.alphas_cumprod.clone().float(), persistent=False
        )
        for module in (unet, autoencoder, prompt_encoder):
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
    def conditioning(self) -> str | None:
        """"text" (prompts), "class" (labels) or None: what :meth:`condition` takes."""
        if self.prompt_encoder is not None:
            return "text"
        if getattr(self.unet.config, "num_class_embeds", None):
            return "class"
        return None

    def condition(
        self, context: Sequence[str] | Sequence[int] | Tensor | None, guided: bool = False
    ) -> dict[str, Any] | None:
        """Denoiser keyword arguments for a batch's context (None for an unconditional Dash).

        Args:
            context: B prompts (text-conditioned Dash) or B int class labels
                (class-conditional Dash); ignored by an unconditional Dash.
            guided: for classifier-free guidance: the 2B rows of the unconditional ("")
                prompts first, then ``context`` (text-conditioned Dash only).
        """
        if guided and self.conditioning != "text":
            raise ValueError(f"guidance_scale is set but Dash {self.source} is not text-conditioned: "
                             "set guidance_scale=null")
        if self.conditioning is None:
            return None
        if context is None:
            raise ValueError(f"Dash {self.source} is {self.conditioning}-conditioned: give it "
                             f"{'prompts' if self.conditioning == 'text' else 'class labels'}")
        if self.conditioning == "text":
            prompts = list(context)
            return self.prompt_encoder([""] * len(prompts) + prompts if guided else prompts)
        labels = torch.as_tensor(context, device=self.alphas_cumprod.device).long()
        classes = self.unet.config.num_class_embeds
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
            raise ValueError(f"class labels {int(labels.min())}..{int(labels.max())} are invalid for "
                             f"Dash {self.source}: it takes 0..{classes - 1} (is the dataset labelled?)")
        return {"class_labels": labels}

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
