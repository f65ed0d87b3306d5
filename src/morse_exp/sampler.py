"""The one sampling loop: baseline, reuse and Morse differ only in their schedule and Dot.

The loop follows diffusers' scheduler contract: ``set_timesteps(n)``, then for each timestep,
in order, ``scale_model_input`` and exactly one ``step(eps, t, x)``. At a Dash step the noise
estimate is ``dash(x_t, t)``; at a Dot step it is ``z_ts + dot(x_ts, x_t, z_ts, t_s, t)``,
anchored at the last Dash step (``dot=None`` reuses ``z_ts`` unchanged). A Dot that keeps
something of Dash's own calls (DeepCache's deep features) has a ``watching_dash()`` context
that the Dash steps run inside. A schedule's lead steps (before the first Dash step) need a
Dot that builds on no Dash estimate (``anchor_free``, e.g. T-Stitch's small Dash): it gets
``z_ts = 0`` and ``x_ts = x_t``. The sampler never touches alphas or sigmas.

With classifier-free guidance the batch is doubled (unconditional first); each half keeps
its own anchor, and the guided estimate is formed after Dash/Dot, before the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from morse_exp.dash import Dash
from morse_exp.dot import Dot, base_estimate
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import set_timesteps, step_kwargs

StepCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SamplingStats:
    """What one call of :func:`sample` cost.

    Attributes:
        dash_calls: steps that ran Dash.
        dot_calls: steps that ran Dot (or reused the anchor when Dot is None).
        seconds: wall-clock seconds of the whole loop (device-synchronised).
    """

    dash_calls: int
    dot_calls: int
    seconds: float

    def lsd(self, speed_ratio: float) -> float:
        """Cost in Dash-step latencies: dash_calls + dot_calls / speed_ratio."""
        return self.dash_calls + self.dot_calls / speed_ratio


@torch.no_grad()
def sample(
    dash: Dash,
    scheduler: Any,
    schedule: DashSchedule,
    generators: list[torch.Generator],
    dot: Dot | None = None,
    cond: dict[str, Any] | None = None,
    guidance_scale: float | None = None,
    callback: StepCallback | None = None,
    stop_before: int | None = None,
) -> tuple[Tensor, SamplingStats]:
    """Run the sampler from per-sample initial noise to samples in Dash's space.

    Args:
        dash: the frozen Dash.
        scheduler: a diffusers-contract scheduler (fresh or reusable; it is reset here).
        schedule: step count and Dash step positions; ``DashSchedule.every_step(n)`` is the
            baseline.
        generators: one per sample (see ``seeding.sample_generators``); they fix the initial
            noise and every stochastic step, and their device is the sampling device.
        dot: the residual model, added to its ``base`` estimate (:func:`morse_exp.dot.base_estimate`;
            "eps" where it has none); None reuses the last Dash estimate at Dot steps.
        cond: denoiser keyword arguments batch-aligned with the samples (doubled,
            unconditional half first, when ``guidance_scale`` is set).
        guidance_scale: classifier-free guidance weight w (eps_u + w (eps_c - eps_u)); None
            for unguided sampling.
        callback: called after every step with ``{i, t, x, eps, source}``.
        stop_before: run steps 0..stop_before-1 only and return the state at step
            ``stop_before``, the scheduler left ready to take that step (None: run them all).

    Returns:
        (B, C, H, W) samples in the model's space (latents for latent models; decode with
        ``dash.decode``) and the loop's :class:`SamplingStats`.
    """
    if schedule.lead_steps and not getattr(dot, "anchor_free", False):
        raise ValueError(f"the schedule starts with {schedule.lead_steps} lead steps, which need an anchor-free "
                         f"model (e.g. stitch's small Dash), not {type(dot).__name__}")
    device = generators[0].device
    dtype = next(dash.unet.parameters()).dtype
    set_timesteps(scheduler, schedule.num_steps, device=device)
    timesteps = scheduler.timesteps
    step_options = step_kwargs(scheduler, generators)
    shape = (len(generators), *dash.sample_shape)
    x = randn_tensor(shape, generator=generators, device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    anchor: tuple[Tensor, Tensor, Tensor] | None = None
    watching_dash = getattr(dot, "watching_dash", nullcontext)
    dash_calls = dot_calls = 0
    _synchronize(device)
    start = time.perf_counter()
    for i, t in enumerate(timesteps[:stop_before]):
        model_input = scheduler.scale_model_input(x, t)
        if guidance_scale is not None:
            model_input = torch.cat([model_input, model_input])
        if schedule.is_dash_step(i):
            with watching_dash():
                z = dash(model_input, t, cond)
            anchor = (model_input, z, t)
            dash_calls += 1
            source = "dash"
        else:
            x_ts, z_ts, t_s = anchor if anchor is not None else (model_input, torch.zeros_like(model_input), t)
            # Dash's last estimate carried to this step (a Dot's ``base``; reuse and rivals: "eps")
            base = base_estimate(getattr(dot, "base", "eps"), x_ts, z_ts, t_s, model_input, t,
                                 getattr(scheduler, "alphas_cumprod", None))
            z = base if dot is None else base + dot(x_ts, model_input, base, t_s, t, cond)
            dot_calls += 1
            source = "dot"
        eps = z
        if guidance_scale is not None:
            eps_uncond, eps_cond = z.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = scheduler.step(eps, t, x, **step_options).prev_sample
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": eps, "source": source})
    _synchronize(device)
    return x, SamplingStats(dash_calls, dot_calls, time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
