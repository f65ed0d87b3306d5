"""Latency of Dash and Dot steps on the current device, and their ratio N.

N (``speed_ratio``) converts Dot steps into LSD: one Dot step costs 1/N of a Dash step. It is
measured, never assumed: it depends on the device, the batch size and Dot's m.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from morse_exp.dash import Dash
from morse_exp.dot import Dot


@dataclass(frozen=True)
class SpeedMeasurement:
    """Median seconds per step of Dash and of Dot at one batch size, and their ratio."""

    batch_size: int
    dash_seconds: float
    dot_seconds: float

    @property
    def ratio(self) -> float:
        """N = Dash seconds per step / Dot seconds per step."""
        return self.dash_seconds / self.dot_seconds


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 2, device: str = "cpu") -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    times = []
    for index in range(warmup + repeats):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def measure_speed_ratio(
    dash: Dash, dot: Dot, batch_size: int, device: str | torch.device = "cpu", repeats: int = 5,
    cond: dict | None = None,
) -> SpeedMeasurement:
    """Time one Dash step and one Dot step on random inputs of ``batch_size`` samples.

    The Dash and Dot calls are interleaved repeat by repeat, so drifts of a noisy machine hit
    both alike.
    """
    device = torch.device(device)
    dtype = next(dash.unet.parameters()).dtype
    shape = (batch_size, *dash.sample_shape)
    x_ts, x_ti, z_ts = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    t_s, t_i = torch.tensor(600, device=device), torch.tensor(500, device=device)
    dash_times, dot_times = [], []
    for _ in range(repeats):
        dash_times.append(median_seconds(lambda: dash(x_ti, t_i, cond), 1, 1, device.type))
        dot_times.append(median_seconds(lambda: dot(x_ts, x_ti, z_ts, t_s, t_i, cond), 1, 1, device.type))
    return SpeedMeasurement(batch_size, statistics.median(dash_times), statistics.median(dot_times))


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
