"""Sampling schedulers by name, built from a Dash's training scheduler config.

Every scheduler is diffusers' own except ``sde``: diffusers has no VP-SDE sampler for
discrete-time noise-prediction models (``ScoreSdeVpScheduler`` expects a continuous-time
score model and is no longer exported), so :class:`VPSDEScheduler` runs Euler-Maruyama over
the VP SDE of Song et al. (2021) whose beta(tau) is the model's own DDPM beta schedule in the
continuous limit.

Schedulers always receive a noise estimate: Dash converts other parameterisations first, so
``prediction_type`` is forced to ``epsilon`` here.

A few ``step()`` arguments are set in the scheduler's config like its constructor options
(:data:`STEP_OPTIONS`): DDIM's ``use_clipped_model_output``. With ``clip_sample`` (the DDPM
default) diffusers' DDIM clips its x0 estimate to [-1, 1] but keeps the model's eps, so the
step leaves DDIM's update (x_t is no longer sqrt(a) x0 + sqrt(1 - a) eps); ``true`` re-derives
eps from the clipped x0 (GLIDE's choice). diffusers' pipelines keep ``false``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerOutput
from diffusers.utils.torch_utils import randn_tensor
from omegaconf import OmegaConf


class VPSDEScheduler(DDPMScheduler):
    """Euler-Maruyama sampler of the reverse VP SDE for a discrete-time eps model.

    The forward SDE is dx = -1/2 beta x dtau + sqrt(beta) dw with beta * dtau = beta_t * dt on
    the model's integer timestep axis t (DDPM's continuous limit, the correspondence Song et
    al. use for the DDPM CIFAR-10 model). Timesteps are n integers evenly spaced from T-1 down
    to 0 (exclusive); one reverse step from t to t' < t is

        x' = x + b (x / 2 + score) + sqrt(b) z,   b = beta_t (t - t'),
        score = -eps / sqrt(1 - alpha_bar_t),

    and the last step (t' = 0) returns the mean without noise (Song et al.'s "denoise" step).
    Betas, alphas and the forward process (``add_noise``) are DDPMScheduler's.
    """

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        total = self.config.num_train_timesteps
        if not 1 <= num_inference_steps < total:
            raise ValueError(
                f"num_inference_steps={num_inference_steps} is invalid for the sde sampler: "
                f"use 1..{total - 1}"
            )
        grid = np.round(np.linspace(total - 1, 0, num_inference_steps + 1)).astype(np.int64)
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(grid[:-1]).to(device)
        self._previous = {int(t): int(p) for t, p in itertools.pairwise(grid)}

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        t = int(timestep)
        previous = self._previous[t]
        alpha_bar = self.alphas_cumprod[t].to(sample.device, sample.dtype)
        beta_dt = self.betas[t].to(sample.device, sample.dtype) * (t - previous)
        score = -model_output / (1 - alpha_bar).sqrt()
        prev_sample = sample + beta_dt * (sample / 2 + score)
        if previous > 0:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = prev_sample + beta_dt.sqrt() * noise
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)


SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ddpm": (diffusers.DDPMScheduler, {}),
    "ddim": (diffusers.DDIMScheduler, {}),
    "dpm_solver": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "sde": (VPSDEScheduler, {}),
    "dpm_solver_sde": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
    "euler": (diffusers.EulerDiscreteScheduler, {}),
    "unipc": (diffusers.UniPCMultistepScheduler, {}),
    "lcm": (diffusers.LCMScheduler, {}),
}
STOCHASTIC_SCHEDULERS = ("ddpm", "sde", "dpm_solver_sde", "lcm")
# scheduler name -> the step() arguments its config may set, with diffusers' defaults
STEP_OPTIONS: dict[str, dict[str, Any]] = {"ddim": {"use_clipped_model_output": False}}


def make_scheduler(name: str, base_config: dict[str, Any], **options: Any) -> Any:
    """A fresh scheduler ``name`` with the betas of ``base_config`` (a Dash's training config).

    Args:
        name: one of :data:`SCHEDULERS`.
        base_config: the Dash's training scheduler config (``Dash.scheduler_config``).
        **options: scheduler constructor overrides (``timestep_spacing``, ``solver_order``...).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    scheduler_class, defaults = SCHEDULERS[name]
    step_options = {key: options.pop(key) for key in list(options) if key in STEP_OPTIONS.get(name, {})}
    # diffusers' own from_config: keys the base config only held as defaults take this
    # class's defaults (its ``_use_default_values``), exactly as when swapping schedulers.
    scheduler = scheduler_class.from_config(
        dict(base_config), **{**defaults, **options, "prediction_type": "epsilon"}
    )
    if step_options:
        scheduler.step = functools.partial(scheduler.step, **step_options)
    return scheduler


def set_timesteps(scheduler: Any, num_steps: int, device: str | torch.device | None = None) -> None:
    """``scheduler.set_timesteps(num_steps)``, mended where diffusers' "trailing" spacing miscounts.

    diffusers computes trailing timesteps as ``round(arange(T, 0, -T/n)) - 1``; for some n
    (61, 103, 121, 122, 201, ... at T = 1000) floating-point error adds an (n+1)-th timestep,
    -1. The first n are the right grid, so DDIM keeps them, and schedulers that take explicit
    timesteps (DPM-Solver, Euler) are set to them. Any other miscount is a one-line ValueError.
    """
    scheduler.set_timesteps(num_steps, device=device)
    if len(scheduler.timesteps) == num_steps:
        return
    extra = len(scheduler.timesteps) == num_steps + 1 and int(scheduler.timesteps[-1]) < 0
    if extra and isinstance(scheduler, diffusers.DDIMScheduler):
        scheduler.timesteps = scheduler.timesteps[:num_steps]
        return
    if extra and "timesteps" in inspect.signature(scheduler.set_timesteps).parameters:
        grid = [int(t) for t in scheduler.timesteps[:num_steps]]
        scheduler.set_timesteps(device=device, timesteps=grid)
        if len(scheduler.timesteps) == num_steps:
            return
    raise ValueError(
        f"{type(scheduler).__name__} with timestep_spacing={scheduler.config.get('timestep_spacing')!r} produces "
        f"{len(scheduler.timesteps)} timesteps for {num_steps} steps: choose another budget or "
        "scheduler.timestep_spacing=leading"
    )


def step_kwargs(scheduler: Any, generator: torch.Generator | list[torch.Generator]) -> dict[str, Any]:
    """``{"generator": generator}`` for schedulers whose ``step`` draws noise, else ``{}``."""
    if "generator" in inspect.signature(scheduler.step).parameters:
        return {"generator": generator}
    return {}


def scheduler_options(scheduler_cfg: Any) -> dict[str, Any]:
    """A scheduler config's own settings (``timestep_spacing``...), without Hydra's keys."""
    return {k: v for k, v in OmegaConf.to_container(scheduler_cfg, resolve=True).items()
            if not k.startswith("_") and k != "name"}


def with_step_defaults(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of scheduler ``name`` with every step option it leaves out at its default
    (records written before a step option existed hold none)."""
    return {**options, **{key: value for key, value in STEP_OPTIONS.get(name, {}).items() if key not in options}}
