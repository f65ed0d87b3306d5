"""Which steps of a sampler are Dash steps, and what a schedule costs in LSD.

A *schedule* is a fine step count ``n`` and the set ``S`` of step positions (0-based, in
sampling order) at which the pretrained Dash runs; every other step is a Dot step that adds a
residual to the last Dash estimate. Position 0 is a Dash step (there is nothing to reuse
before it), unless the schedule has *lead steps*: the first steps of a cheap model that needs
no Dash estimate (T-Stitch's small Dash, :mod:`morse_exp.stitch`), after which Dash takes over.

Cost is counted in LSD (latency of one Dash step): a Dash step costs 1, a Dot step costs
``1 / speed_ratio`` where ``speed_ratio`` (N in the paper) is the measured Dash/Dot latency
ratio on the device in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ENDS = ("dot", "dash")


def check_end(end: str) -> None:
    if end not in ENDS:
        raise ValueError(f"jump_stride.end={end!r} is invalid: use one of {', '.join(ENDS)}")


def check_stride(stride: object) -> None:
    """One-line ValueError unless ``stride`` is an integer >= 1."""
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"jump_stride {stride!r} is invalid: use an integer >= 1 (1 = Dash only)")


@dataclass(frozen=True)
class DashSchedule:
    """A fine step count and the step positions at which Dash runs.

    Attributes:
        num_steps: n, the number of sampler steps (timesteps visited).
        dash_steps: sorted step positions in ``[0, n)`` where Dash runs; the first one is
            ``lead_steps`` (0 unless there are lead steps).
        lead_steps: the first steps, run by a model that needs no Dash estimate; costed as
            Dot steps (1/N LSD, N being that model's latency ratio).
    """

    num_steps: int
    dash_steps: tuple[int, ...]
    lead_steps: int = 0

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps={self.num_steps} is invalid: need at least 1 step")
        bad = [p for p in self.dash_steps if not 0 <= p < self.num_steps]
        if bad:
            raise ValueError(
                f"Dash step positions {bad} lie outside the step count: valid positions are "
                f"0..{self.num_steps - 1}"
            )
        if not 0 <= self.lead_steps <= self.num_steps:
            raise ValueError(f"lead_steps={self.lead_steps} is invalid for {self.num_steps} steps: use 0..{self.num_steps}")
        first = self.dash_steps[0] if self.dash_steps else self.num_steps
        if first != self.lead_steps:
            raise ValueError(
                f"dash_steps={list(self.dash_steps)} must start with position {self.lead_steps}: the first step "
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

    @classmethod
    def spread(cls, num_steps: int, dash_calls: int, end: str = "dot") -> DashSchedule:
        """``dash_calls`` Dash steps spread evenly over ``num_steps`` steps.

        ``end="dot"``: Dash at floor(j n / d), j = 0..d-1, so the run ends on Dot steps;
        ``end="dash"``: Dash at round(j (n - 1) / (d - 1)), so the last step is a Dash step.
        """
        check_end(end)
        if not 1 <= dash_calls <= num_steps:
            raise ValueError(f"dash_calls={dash_calls} is invalid for {num_steps} steps: use 1..{num_steps}")
        if end == "dash" and dash_calls > 1:
            last = num_steps - 1
            positions = (round(j * last / (dash_calls - 1)) for j in range(dash_calls))
        else:
            positions = (j * num_steps // dash_calls for j in range(dash_calls))
        return cls(num_steps, tuple(positions))

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

    @property
    def max_gap(self) -> int:
        """The largest gap K: one Dash step and the K - 1 Dot steps that build on it (the last
        Dash step's run to the end of sampling included). 1 for the every-step baseline."""
        ends = (*self.dash_steps[1:], self.num_steps)
        return max((b - a for a, b in zip(self.dash_steps, ends, strict=True)), default=1)

    def jump_point(self, position: int) -> int:
        """The last Dash step at or before ``position`` (s(i) in the paper)."""
        return max(p for p in self.dash_steps if p <= position)


@dataclass(frozen=True)
class JumpPattern:
    """How Dash steps are placed, in one of three ways.

    - ``stride``: Dash at every ``stride``-th step from step 0 (scales to any step count).
    - ``positions``: fixed step indices (only make sense for one step count).
    - ``dot_share`` (q, the paper's k/B): a budget of B LSD spends (1 - q) B on Dash steps
      and q B on Dot steps, i.e. d = floor((1 - q) B + 1/2) Dash steps and floor((B - d) N) Dot
      steps, about N q / (1 - q) Dot steps per Dash step (N at q = 1/2, the paper's
      "k = B/2"), spread evenly; ``end`` says whether sampling ends on Dot steps ("dot") or
      on a Dash step ("dash"). Such a pattern exists only for a budget and an N
      (:meth:`fit_budget`), not for a bare step count.
    """

    stride: int = 1
    positions: tuple[int, ...] | None = None
    dot_share: float | None = None
    end: str = "dot"

    def __post_init__(self) -> None:
        check_stride(self.stride)
        check_end(self.end)
        if self.dot_share is not None and not (
            isinstance(self.dot_share, (int, float)) and 0 < self.dot_share < 1
        ):
            raise ValueError(
                f"jump_stride.dot_share={self.dot_share!r} is invalid: use a share of the budget in (0, 1) "
                "(0.5: the paper's k = B/2)"
            )

    @property
    def max_gap(self) -> int | None:
        """The largest number of steps between consecutive Dash steps (K); None for a
        ``dot_share`` pattern, whose gaps follow from the budget and N."""
        if self.dot_share is not None:
            return None
        if self.positions is None:
            return self.stride
        gaps = [b - a for a, b in zip(self.positions, self.positions[1:], strict=False)]
        return max(gaps, default=1)

    def schedule(self, num_steps: int) -> DashSchedule:
        if self.dot_share is not None:
            raise ValueError(
                "a dot_share pattern has no schedule for a bare step count: use fit_budget(budget, N)"
            )
        if self.positions is not None:
            return DashSchedule.from_pattern(num_steps, self.positions)
        return DashSchedule.from_stride(num_steps, self.stride)

    def fit_budget(self, lsd_budget: float, speed_ratio: float) -> DashSchedule:
        """The schedule with the most steps whose cost fits ``lsd_budget``.

        Raises:
            ValueError: if the budget is below 1 LSD (not even one Dash step fits), above
                :data:`MAX_LSD_BUDGET`, or (``dot_share``) too small for one Dash and one Dot step.
        """
        if not math.isfinite(lsd_budget) or not 1 <= lsd_budget <= MAX_LSD_BUDGET:
            raise ValueError(
                f"LSD budget {lsd_budget} is invalid: it must lie in [1, {MAX_LSD_BUDGET}] (1 = one Dash step)"
            )
        if speed_ratio <= 0:
            raise ValueError(f"speed_ratio={speed_ratio} is invalid: it must be > 0")
        if self.dot_share is not None:
            return self._share_schedule(lsd_budget, speed_ratio)
        n = 1 if self.positions is None else max(self.positions) + 1
        shortest = self.schedule(n)
        if shortest.lsd(speed_ratio) > lsd_budget + 1e-9:
            raise ValueError(
                f"LSD budget {lsd_budget} is too small for jump pattern {list(self.positions)}: "
                f"it needs at least {shortest.lsd(speed_ratio):.2f} LSD"
            )
        per_step = self.schedule(max(n, self.stride)).lsd(speed_ratio) / max(n, self.stride)
        n = max(n, int(lsd_budget / per_step) - self.stride)  # jump close, then step up
        while self.schedule(n + 1).lsd(speed_ratio) <= lsd_budget + 1e-9:
            n += 1
        return self.schedule(n)

    def _share_schedule(self, lsd_budget: float, speed_ratio: float) -> DashSchedule:
        smallest = 1 + 1 / speed_ratio
        if lsd_budget < smallest - 1e-9:
            raise ValueError(
                f"LSD budget {lsd_budget} is too small for jump_stride.dot_share={self.dot_share}: one Dash "
                f"and one Dot step need {smallest:.2f} LSD at N = {speed_ratio:.2f}"
            )
        most_dash = math.floor(lsd_budget - 1 / speed_ratio + 1e-9)
        dash_calls = min(max(1, math.floor((1 - self.dot_share) * lsd_budget + 0.5)), most_dash)
        dot_calls = math.floor((lsd_budget - dash_calls) * speed_ratio + 1e-9)
        return DashSchedule.spread(dash_calls + dot_calls, dash_calls, self.end)


MAX_LSD_BUDGET = 10_000
"""The largest budget accepted (LSD): beyond it a schedule's step list alone would exhaust memory."""


class SearchedPattern:
    """One schedule per LSD budget, as found by ``python -m morse_exp.search`` and saved in its
    ``schedules.yaml`` (``jump_stride=searched jump_stride.path=<that file>``).

    File layout: ``speed_ratio`` (the N searched with), ``schedules``: budget (LSD) ->
    ``{num_steps: n, dash_steps: [0, ...]}``; other keys (objective, calibration seeds,
    scores) are provenance.

    Raises:
        ValueError: one line, if the file is missing, not YAML, or holds an invalid schedule.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        record = read_searched(self.path)
        self.speed_ratio = float(record["speed_ratio"])
        self.schedules = {
            float(budget): DashSchedule(int(entry["num_steps"]), tuple(int(p) for p in entry["dash_steps"]))
            for budget, entry in record["schedules"].items()
        }

    @property
    def max_gap(self) -> int:
        """The largest gap K over every stored schedule."""
        return max(schedule.max_gap for schedule in self.schedules.values())

    @property
    def settings(self) -> dict[str, object]:
        """What decides the samples (hashed with a result): N and every schedule."""
        return {"speed_ratio": self.speed_ratio,
                "schedules": {str(b): [s.num_steps, list(s.dash_steps)] for b, s in sorted(self.schedules.items())}}

    def fit_budget(self, lsd_budget: float, speed_ratio: float) -> DashSchedule:
        """The schedule searched for ``lsd_budget``; one-line ValueError when there is none, or
        when at this ``speed_ratio`` it would cost more than the budget."""
        schedule = self.schedules.get(float(lsd_budget))
        if schedule is None:
            have = ", ".join(f"{b:g}" for b in sorted(self.schedules))
            raise ValueError(f"LSD budget {lsd_budget:g} has no searched schedule in {self.path} (it holds {have}): "
                             "search that budget or evaluate those")
        cost = schedule.lsd(speed_ratio)
        if cost > lsd_budget + 1e-9:
            raise ValueError(
                f"the schedule searched in {self.path} for {lsd_budget:g} LSD at N = {self.speed_ratio:.2f} costs "
                f"{cost:.2f} LSD at this run's N = {speed_ratio:.2f}: search again with this N"
            )
        return schedule


def read_searched(path: str) -> dict:
    """The YAML record of a schedule search (see :class:`SearchedPattern`), checked."""
    hint = "run python -m morse_exp.search and pass its schedules.yaml as jump_stride.path"
    try:
        record = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"jump_stride.path={path}: no such file; {hint}") from None
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"jump_stride.path={path} cannot be read as YAML ({type(error).__name__}); {hint}") from None
    if not isinstance(record, dict) or not isinstance(record.get("schedules"), dict) or not record["schedules"] \
            or not isinstance(record.get("speed_ratio"), (int, float)):
        raise ValueError(f"jump_stride.path={path} is not a schedule search record (speed_ratio, schedules); {hint}")
    for budget, entry in record["schedules"].items():
        try:
            DashSchedule(int(entry["num_steps"]), tuple(int(p) for p in entry["dash_steps"]))
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"jump_stride.path={path}: the schedule for {budget} LSD is invalid ({error})") from None
    return record
