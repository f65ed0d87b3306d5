"""Dot: the cheap residual model, built from Dash's own weights.

Layout (m = ``num_down``, C = Dash's sample channels, C0 = Dash's first block width, w = ``width``)::

    [x_ti, x_ts, z_ts]  (B, 3C, H, W)
        └─ stem: 3x3 conv                                  -> (B, w, H, W)        skip 0
              └─ m blocks: stride-2 conv + ResNet block    -> ... (B, C0, H/2^m, W/2^m)  skips 1..m-1
                    └─ Dash's own UNet body (shared tensors, LoRA on, conv_in/conv_out bypassed)
        ┌─ m blocks: 2x upsample + skip + ResNet block     <- (B, C0, H/2^m, W/2^m)
    the last up block at full resolution, then GroupNorm, SiLU, zero-initialised 3x3 conv
                                                           -> residual (B, C, H, W)

The up path mirrors the down path: every up block is a time-conditioned ResNet block, so the
residual's fine structure (finer than the body's resolution) is modelled non-linearly at the
resolution where it lives. The zero-initialised output conv makes an untrained Dot return
exactly 0: Morse with it is "reuse the last Dash estimate".

Dash's body runs on 4^m times fewer pixels. Its parameter tensors are the very ones Dash
uses: LoRA adapters (peft) are injected into them and are active only inside ``Dot.forward``;
Dash calls see the bare weights. The body is entered and left through forward hooks on the
UNet's ``conv_in`` (its output is replaced by Dot's features) and ``conv_out`` (its input,
the body's final features, is captured), so any diffusers UNet class works unchanged.

Dot's own blocks are conditioned on t_i and on the jump gap t_s - t_i through diffusers'
timestep embeddings; the UNet body gets t_i through Dash's own time embedding.

The residual is added to a *base* estimate at t_i made from Dash's last one (``base``):
``"eps"`` keeps Dash's noise estimate z_ts (the paper's Dot; with a zero residual, reuse);
``"x0"`` keeps Dash's data estimate x0_s = (x_ts - sqrt(1 - a_s) z_ts) / sqrt(a_s) and gives
the noise that it implies at the current state, (x_ti - sqrt(a_i) x0_s) / sqrt(1 - a_i)
(a = alphas_cumprod). For a first-order deterministic step (DDIM) the two coincide on reuse's
own states; a stochastic sampler's fresh noise in x_ti is absorbed by the x0 base only, so
there the "eps" base leaves the Dot to learn a noise-dependent linear map.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from morse_exp.dash import Dash, _timestep_batch

DEFAULT_LORA_TARGETS = ("conv1", "conv2", "to_q", "to_k", "to_v", "to_out.0", "time_emb_proj")
DOT_BASES = ("eps", "x0")


def check_base(base: str) -> None:
    """One-line ValueError unless ``base`` is one of :data:`DOT_BASES`."""
    if base not in DOT_BASES:
        raise ValueError(f"dot.base={base!r} is invalid: use one of {', '.join(DOT_BASES)}")


def base_estimate(
    base: str, x_ts: Tensor, z_ts: Tensor, t_s: Tensor | float, x_ti: Tensor, t_i: Tensor | float,
    alphas_cumprod: Tensor | None = None,
) -> Tensor:
    """The (B, C, H, W) noise estimate at t_i that a Dot's residual is added to (module docstring).

    Args:
        base: one of :data:`DOT_BASES`.
        x_ts, z_ts: (B, C, H, W) Dash's input and noise estimate at the jump point t_s.
        x_ti: (B, C, H, W) the model input at t_i.
        t_s, t_i: scalar or (B,) training-scale timesteps (fractional ones interpolate).
        alphas_cumprod: (T,) the Dash's training schedule (needed by "x0" only).
    """
    if base == "eps":
        return z_ts
    a_s, a_i = (_alpha_bar(alphas_cumprod, t, x_ti) for t in (t_s, t_i))
    x0 = (x_ts.float() - (1 - a_s).sqrt() * z_ts.float()) / a_s.sqrt()
    return ((x_ti.float() - a_i.sqrt() * x0) / (1 - a_i).sqrt()).to(z_ts.dtype)


def _alpha_bar(alphas_cumprod: Tensor, t: Tensor | float, like: Tensor) -> Tensor:
    """alphas_cumprod at timestep(s) t, linearly interpolated; shaped to broadcast over ``like``."""
    alphas = alphas_cumprod.to(like.device, torch.float32)
    t = torch.as_tensor(t, device=like.device, dtype=torch.float32).clamp(0, len(alphas) - 1)
    low = t.floor().long()
    high = (low + 1).clamp(max=len(alphas) - 1)
    value = torch.lerp(alphas[low], alphas[high], t - low)
    return value.reshape(-1, *[1] * (like.dim() - 1)) if value.dim() else value


class Dot(nn.Module):
    """Residual model ``dot(x_ts, x_ti, z_ts, t_s, t_i, cond) -> residual``.

    Args:
        dash: the Dash whose UNet is shared (LoRA adapters are injected into it in place).
        num_down: m, the number of 2x downsampling blocks before the shared body.
        width: channels of Dot's own blocks above the body's resolution.
        lora_rank: rank r of the LoRA adapters; 0 trains no adapters (body frozen as is).
        lora_alpha: LoRA scale numerator (scale = alpha / r); default r.
        lora_targets: module-name suffixes of the UNet that get adapters.
        norm_groups: GroupNorm groups in Dot's ResNet blocks.
        base: what the residual is added to, one of :data:`DOT_BASES` (:func:`base_estimate`);
            not part of ``config`` (the weights' layout), recorded beside it as ``dot_base``.

    Raises:
        ValueError: if the sample size is not divisible by 2^(m + Dash's depth), or ``base``
            is not one of :data:`DOT_BASES`.
    """

    def __init__(
        self,
        dash: Dash,
        num_down: int = 2,
        width: int = 32,
        lora_rank: int = 8,
        lora_alpha: float | None = None,
        lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
        norm_groups: int = 8,
        base: str = "eps",
    ) -> None:
        super().__init__()
        check_base(base)
        self.base = base
        unet = dash.unet
        channels, height, width_px = dash.sample_shape
        depth = len(unet.config.block_out_channels) - 1
        factor = 2 ** (num_down + depth)
        if num_down < 1 or height % factor or width_px % factor:
            raise ValueError(
                f"dot.num_down={num_down} is invalid for {height}x{width_px} samples and a Dash "
                f"of depth {depth}: need m >= 1 and size divisible by 2^(m + {depth}) = {factor}"
            )
        self.num_down = num_down
        self.config = {
            "num_down": num_down, "width": width, "lora_rank": lora_rank,
            "lora_alpha": lora_alpha, "lora_targets": list(lora_targets), "norm_groups": norm_groups,
        }
        self.dash = dash
        body_width = unet.config.block_out_channels[0]
        time_dim = 4 * width
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(2 * width, time_dim)

        widths = [width] * (num_down - 1) + [body_width]
        self.stem = nn.Conv2d(3 * channels, width, 3, padding=1)
        self.down = nn.ModuleList()
        in_ch = width
        for out_ch in widths:
            self.down.append(_DownBlock(in_ch, out_ch, time_dim, norm_groups))
            in_ch = out_ch
        self.up = nn.ModuleList()
        for skip_ch in reversed([width, *widths[:-1]]):  # skip widths, coarsest first
            self.up.append(_UpBlock(in_ch, skip_ch, width, time_dim, norm_groups))
            in_ch = width
        self.head = _Head(width, channels, norm_groups)

        self.lora_layers: list[BaseTunerLayer] = []
        if lora_rank > 0:
            lora = LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha or lora_rank,
                target_modules=list(lora_targets),
                lora_dropout=0.0,
            )
            try:
                inject_adapter_in_model(lora, unet)
            except ValueError as error:
                raise ValueError(f"dot.lora_targets={list(lora_targets)}: {error}") from error
            self.lora_layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
            _set_adapters(self.lora_layers, enabled=False)

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of exactly Dot's new blocks and the LoRA adapters."""
        for name, param in self.named_parameters():
            if not name.startswith("dash.") or ".lora_" in name:
                yield name, param

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Dot's own weights (new blocks + LoRA), without a copy of Dash."""
        return {name: param.detach() for name, param in self.trainable_parameters()}

    def forward(
        self,
        x_ts: Tensor,
        x_ti: Tensor,
        z_ts: Tensor,
        t_s: Tensor | float,
        t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """Residual to add to the last Dash estimate.

        Args:
            x_ts: (B, C, H, W) model input at the jump point.
            x_ti: (B, C, H, W) model input at the current step.
            z_ts: (B, C, H, W) the base estimate at t_i (:func:`base_estimate`; with
                ``base="eps"`` Dash's noise estimate at the jump point).
            t_s, t_i: scalar or (B,) training-scale timesteps (t_s >= t_i).
            cond: Dash's conditioning keyword arguments, batch-aligned.

        Returns:
            (B, C, H, W) residual r; the noise estimate at t_i is z_ts + r.
        """
        t_s, t_i = _timestep_batch(t_s, x_ti), _timestep_batch(t_i, x_ti)
        time = torch.cat([self.time_proj(t_i), self.time_proj(t_s - t_i)], dim=1)
        emb = self.time_embed(time.to(x_ti.dtype))
        h = self.stem(torch.cat([x_ti, x_ts, z_ts], dim=1))
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h, emb)
        h = self._body(h, t_i, cond)
        for block in self.up:
            h = block(h, skips.pop(), emb)
        return self.head(h)

    def _body(self, features: Tensor, t_i: Tensor, cond: dict[str, Any] | None) -> Tensor:
        """Dash's UNet with LoRA on, entered after conv_in and left before conv_out."""
        unet = self.dash.unet
        captured: list[Tensor] = []
        enter = unet.conv_in.register_forward_hook(lambda _m, _i, _o: features)
        leave = unet.conv_out.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
        placeholder = features.new_zeros(
            features.shape[0], unet.config.in_channels, *features.shape[2:]
        )
        try:
            with adapters_enabled(self.lora_layers):
                unet(placeholder, t_i, **(cond or {}))
        finally:
            enter.remove()
            leave.remove()
        return captured[0]


class OracleDot(nn.Module):
    """A diagnostic Dot that returns the exact residual ``Dash(x_ti, t_i) - z_ts``.

    Morse with it reproduces every-step Dash (up to rounding) while its Dot steps are charged
    1/N LSD: the ceiling of a jump pattern, the speedup a perfect Dot would reach. Its
    wall-clock time is Dash's, so only its LSD cost means anything.
    """

    def __init__(self, dash: Dash) -> None:
        super().__init__()
        self.dash = dash

    def forward(
        self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Tensor | float, t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        return self.dash(x_ti, t_i, cond) - z_ts


class ReuseDot(nn.Module):
    """Reuse on a Dot base: nothing added to :func:`base_estimate` at the Dot steps, what an
    untrained Dot returns (its output conv starts at zero). On the "eps" base this is the
    paper's reuse, Dash's last noise estimate carried on unchanged; on "x0", the noise that
    Dash's last data estimate implies at the current state."""

    def __init__(self, base: str = "eps") -> None:
        super().__init__()
        check_base(base)
        self.base = base

    def forward(
        self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Tensor | float, t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        return torch.zeros_like(z_ts)


def method_dots(dash: Dash, dot: Dot) -> dict[str, nn.Module]:
    """The model each Dot-stepping method samples with at its Dot steps: ``morse`` the given
    Dot, ``oracle`` Dash itself, ``reuse`` nothing added to the Dot's base (the baseline: none)."""
    return {"morse": dot, "oracle": OracleDot(dash), "reuse": ReuseDot(dot.base)}


@contextmanager
def adapters_enabled(layers: Sequence[BaseTunerLayer]) -> Iterator[None]:
    """Switch LoRA adapters on inside the block, off after it."""
    _set_adapters(layers, enabled=True)
    try:
        yield
    finally:
        _set_adapters(layers, enabled=False)


def _set_adapters(layers: Sequence[BaseTunerLayer], enabled: bool) -> None:
    # peft's public ``enable_adapters`` also flips requires_grad, which would cut the
    # adapters out of the autograd graph built inside Dot's forward; only the flag is set.
    for layer in layers:
        layer._disable_adapters = not enabled


class _DownBlock(nn.Module):
    """Stride-2 conv to half resolution, then a time-conditioned ResNet block."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.downsample = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
        self.block = ResnetBlock2D(
            in_channels=out_ch, out_channels=out_ch, temb_channels=time_dim, groups=groups
        )

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return self.block(self.downsample(h), emb)


class _UpBlock(nn.Module):
    """2x nearest upsample, concat the skip of that resolution, time-conditioned ResNet block."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.block = ResnetBlock2D(
            in_channels=in_ch + skip_ch, out_channels=out_ch, temb_channels=time_dim, groups=groups
        )

    def forward(self, h: Tensor, skip: Tensor, emb: Tensor) -> Tensor:
        return self.block(torch.cat([self.upsample(h), skip], dim=1), emb)


class _Head(nn.Module):
    """Full-resolution features -> residual: GroupNorm, SiLU, zero-initialised 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, in_ch)
        self.act = nn.SiLU()
        self.out = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.act(self.norm(h)))
