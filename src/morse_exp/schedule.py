"""Which steps of a sampler are Dash steps, and what a schedule costs in LSD.

A *schedule* is a fine step count ``n`` and the set ``S`` of step positions (0-based, in
sampling order) at which the pretrained Dash runs; every other step is a Dot step that adds a
residual to the last Dash estimate. Position 0 is always a Dash step: there is nothing to
reuse before it.

Cost is counted in LSD (latency of one Dash step): a Dash step costs 1, a Dot step costs
``1 / speed_ratio`` where ``speed_ratio`` (N in the paper) is the measured Dash/Dot latency
ratio on the device in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def check_stride(stride: object) -> None:
    """One-line ValueError unless ``stride`` is an integer >= 1."""
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"jump_stride {stride!r} is invalid: use an integer >= 1 (1 = Dash only)")


@dataclass(frozen=True)
class DashSchedule:
    """A fine step count and the step positions at which Dash runs.

    Attributes:
        num_steps: n, the number of sampler steps (timesteps visited).
        dash_steps: sorted step positions in ``[0, n)`` where Dash runs; always contains 0.
    """

    num_steps: int
    dash_steps: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps={self.num_steps} is invalid: need at least 1 step")
        bad = [p for p in self.dash_steps if not 0 <= p < self.num_steps]
        if bad:
            raise ValueError(
                f"Dash step positions {bad} lie outside the step count: valid positions are "
                f"0..{self.num_steps - 1}"
            )
        if not self.dash_steps or self.dash_steps[0] != 0:
            raise ValueError(
                f"dash_steps={list(self.dash_steps)} must start with position 0: the first step "
                "has no earlier Dash estimate for Dot to build on"
            )
        if list(self.dash_steps) != sorted(set(self.dash_steps)):
            raise ValueError(f"dash_steps={list(self.dash_steps)} must be sorted and unique")

    @classmethod
    def every_step(cls, num_steps: int) -> DashSchedule:
        """The baseline: Dash at every step (no Dot)."""
        return cls.from_stride(num_steps, 1)

    @classmethod
    def from_stride(cls, num_steps: int, stride: int) -> DashSchedule:
        """Dash at every ``stride``-th step, starting at step 0."""
        check_stride(stride)
        return cls(num_steps, tuple(range(0, num_steps, stride)))

    @classmethod
    def from_pattern(cls, num_steps: int, pattern: Sequence[int]) -> DashSchedule:
        """Dash at the explicitly listed step positions."""
        return cls(num_steps, tuple(int(p) for p in pattern))

    @property
    def dash_calls(self) -> int:
        return len(self.dash_steps)

    @property
    def dot_calls(self) -> int:
        return self.num_steps - len(self.dash_steps)

    def is_dash_step(self, position: int) -> bool:
        return position in self.dash_steps

    def lsd(self, speed_ratio: float) -> float:
        """Cost in LSD: ``dash_calls + dot_calls / speed_ratio``."""
        if speed_ratio <= 0:
            raise ValueError(f"speed_ratio={speed_ratio} is invalid: it must be > 0")
        return self.dash_calls + self.dot_calls / speed_ratio

    def jump_point(self, position: int) -> int:
        """The last Dash step at or before ``position`` (s(i) in the paper)."""
        return max(p for p in self.dash_steps if p <= position)


@dataclass(frozen=True)
class JumpPattern:
    """How Dash steps are placed: every ``stride``-th step, or an explicit position list.

    ``positions`` (if given) are fixed step indices and only make sense for one step count;
    ``stride`` scales to any step count.
    """

    stride: int = 1
    positions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_stride(self.stride)

    @property
    def max_gap(self) -> int:
        """The largest number of steps between consecutive Dash steps (K)."""
        if self.positions is None:
            return self.stride
        gaps = [b - a for a, b in zip(self.positions, self.positions[1:], strict=False)]
        return max(gaps, default=1)

    def schedule(self, num_steps: int) -> DashSchedule:
        if self.positions is not None:
            return DashSchedule.from_pattern(num_steps, self.positions)
        return DashSchedule.from_stride(num_steps, self.stride)

    def fit_budget(self, lsd_budget: float, speed_ratio: float) -> DashSchedule:
        """The schedule with the most steps whose cost fits ``lsd_budget``.

        Raises:
            ValueError: if the budget is below 1 LSD (not even one Dash step fits).
        """
        if not math.isfinite(lsd_budget) or lsd_budget < 1:
            raise ValueError(
                f"LSD budget {lsd_budget} is invalid: it must be >= 1 (one Dash step)"
            )
        n = 1 if self.positions is None else max(self.positions) + 1
        shortest = self.schedule(n)
        if shortest.lsd(speed_ratio) > lsd_budget + 1e-9:
            raise ValueError(
                f"LSD budget {lsd_budget} is too small for jump pattern {list(self.positions)}: "
                f"it needs at least {shortest.lsd(speed_ratio):.2f} LSD"
            )
        while self.schedule(n + 1).lsd(speed_ratio) <= lsd_budget + 1e-9:
            n += 1
        return self.schedule(n)
