"""T-Stitch as a Dot: a small Dash for the first part of the trajectory, Dash after it (after
Pan et al., ICLR 2025).

At fraction f, a schedule of n steps runs the small model at its first k = round(f n) steps
(the schedule's *lead steps*, which build on no Dash estimate) and Dash at the other n - k.
A small step costs 1/N LSD, N being the Dash / small-model latency ratio, measured like Dot's.
f = 0 is the baseline exactly; f = 1 runs the small model alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from morse_exp.dash import Dash
from morse_exp.schedule import MAX_LSD_BUDGET, DashSchedule


class StitchPattern:
    """Schedules with the first round(fraction x n) steps on the small model, Dash after."""

    def __init__(self, fraction: float) -> None:
        self.fraction = check_fraction(fraction)

    def schedule(self, num_steps: int) -> DashSchedule:
        lead = round(self.fraction * num_steps)
        return DashSchedule(num_steps, tuple(range(lead, num_steps)), lead_steps=lead)

    def fit_budget(self, lsd_budget: float, speed_ratio: float) -> DashSchedule:
        """The schedule with the most steps whose cost, (n - k) + k / N LSD, fits ``lsd_budget``."""
        if not math.isfinite(lsd_budget) or not 1 <= lsd_budget <= MAX_LSD_BUDGET:
            raise ValueError(f"LSD budget {lsd_budget} is invalid: it must lie in [1, {MAX_LSD_BUDGET}] (1 = one Dash step)")
        n = max(1, math.floor(lsd_budget))  # never above n LSD: every step costs at most 1
        while self.schedule(n + 1).lsd(speed_ratio) <= lsd_budget + 1e-9:
            n += 1
        return self.schedule(n)


def check_fraction(fraction: Any) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"stitch.fraction={fraction!r} is invalid: use a share of the steps in [0, 1] "
                         "(0 = the baseline, 1 = the small model alone)")
    return float(fraction)


class Stitch(nn.Module):
    """The small model's noise estimate at the lead steps (``anchor_free``: it ignores the anchor).

    Args:
        dash: the Dash it is stitched to (checked for the same sample shape and noise schedule).
        small: the small Dash, e.g. a digits-style UNet pretrained on the same data.
        fraction: the share of each schedule's steps run by the small model, in [0, 1].

    Raises:
        ValueError: one line, for a fraction outside [0, 1], or a small model that samples in
            another shape or was trained with another noise schedule.
    """

    anchor_free = True

    def __init__(self, dash: Dash, small: Dash, fraction: float = 0.4) -> None:
        super().__init__()
        self.pattern = StitchPattern(fraction)
        if tuple(small.sample_shape) != tuple(dash.sample_shape):
            raise ValueError(f"stitch.small {small.source} samples in shape {tuple(small.sample_shape)}, Dash "
                             f"{dash.source} in {tuple(dash.sample_shape)}: use a small model of the same data")
        if small.alphas_cumprod.shape != dash.alphas_cumprod.shape or not torch.allclose(
                small.alphas_cumprod.cpu(), dash.alphas_cumprod.cpu()):
            raise ValueError(f"stitch.small {small.source} was trained with another noise schedule than Dash "
                             f"{dash.source}: its steps would not follow Dash's trajectory")
        self.small = small
        self.config = {"method": "stitch", "fraction": self.pattern.fraction, "small": str(small.source)}

    def forward(
        self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Tensor | float, t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """The small model's estimate at ``(x_ti, t_i)`` minus ``z_ts`` (0 at lead steps); (B, C, H, W)."""
        return self.small(x_ti, t_i, cond) - z_ts
