"""Morse stacked with DeepCache: DeepCache's cached steps stand in for some of Morse's Dash steps.

Morse at stride K runs Dash every K steps and Dot between. Stacked with DeepCache at interval
I, only every I-th of those anchor steps runs the full Dash; the I - 1 anchors between are
DeepCache's cached steps (Dash's outer levels on the deep feature stored at the last full
step), and every Dot step builds on the last anchor, full or cached. A period of S = K I
steps is 1 full Dash step, I - 1 cached steps and I (K - 1) Dot steps. Interval 1 is Morse.

To the sampler this is one Dot of jump pattern stride S: it counts its calls since the last
full Dash step (the sampler runs those inside :meth:`MorseDeepCache.watching_dash`) and keeps
its own anchor. Its N is the period's average (:meth:`MorseDeepCache.speed_ratio`), from the
two measured N of its parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from morse_exp.dash import Dash
from morse_exp.deepcache import DeepCache
from morse_exp.dot import Dot
from morse_exp.schedule import DashSchedule, JumpPattern


class MorseDeepCache(nn.Module):
    """Noise estimates of Morse with DeepCache at its Dash steps, as one Dot.

    Args:
        dash: the frozen Dash.
        dot: the trained Dot (its weights are used as they are).
        stride: K, Morse's stride (an anchor every K steps); the Dot must cover gaps 1..K-1.
        depth: DeepCache's branch depth (see :class:`~morse_exp.deepcache.DeepCache`).
        interval: I, a full Dash step every I anchors (1: plain Morse).

    Raises:
        ValueError: (one line) for a stride or interval that is not an integer >= 1, a depth
            the UNet does not have, or a Dot whose base is not "eps" (the stack carries Dash's
            noise estimate from its anchors).
    """

    def __init__(self, dash: Dash, dot: Dot, stride: int, depth: int = 1, interval: int = 2) -> None:
        super().__init__()
        for key, value in (("jump_stride.stride", stride), ("morse_deepcache.interval", interval)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} is invalid for morse_deepcache: use an integer >= 1")
        if dot.base != "eps":
            raise ValueError(f"morse_deepcache stacks a Dot with dot.base=eps, not dot.base={dot.base}: "
                             "leave morse_deepcache out of methods for this Dot")
        self.dot = dot
        self.deepcache = DeepCache(dash, depth=depth, interval=interval)
        self.stride, self.interval = stride, interval
        self.pattern = JumpPattern(stride=stride * interval)
        self.config = {"method": "morse_deepcache", "stride": stride, "depth": depth, "interval": interval,
                       "dot": dot.config}
        self._calls = 0
        self._anchor: tuple[Tensor, Tensor, Tensor | float] | None = None

    @contextmanager
    def watching_dash(self) -> Iterator[None]:
        """A full Dash step: DeepCache stores its deep feature, and the count of calls since
        the last full step and the own anchor start over."""
        self._calls, self._anchor = 0, None
        with self.deepcache.watching_dash():
            yield

    def forward(
        self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Tensor | float, t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """Residual to ``z_ts`` (the last full Dash estimate) at step ``t_i``, shapes (B, C, H, W):
        a cached Dash estimate at every K-th call since that step (it becomes the anchor),
        Dot on the last anchor otherwise."""
        self._calls += 1
        if self._calls % self.stride == 0:
            estimate = z_ts + self.deepcache(x_ts, x_ti, z_ts, t_s, t_i, cond)
            self._anchor = (x_ti, estimate, t_i)
            return estimate - z_ts
        x_a, z_a, t_a = self._anchor if self._anchor is not None else (x_ts, z_ts, t_s)
        return z_a + self.dot(x_a, x_ti, z_a, t_a, t_i, cond) - z_ts

    def speed_ratio(self, dot_ratio: float, deepcache_ratio: float) -> float:
        """N of the stack over one period: (S - 1) steps that are not full Dash steps, per their
        cost in Dash latencies, (I - 1) / N_deepcache + I (K - 1) / N_dot."""
        period = self.stride * self.interval
        cost = (self.interval - 1) / deepcache_ratio + self.interval * (self.stride - 1) / dot_ratio
        return (period - 1) / cost if cost > 0 else float("inf")

    def dot_schedule(self, schedule: DashSchedule) -> DashSchedule:
        """The schedule as Dot sees it (an anchor every K steps), for the coverage check."""
        return DashSchedule.from_stride(schedule.num_steps, self.stride)
