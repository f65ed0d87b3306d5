"""Latency of Dash and Dot steps on the current device, and their ratio N.

N (``speed_ratio``) converts Dot steps into LSD: one Dot step costs 1/N of a Dash step. It is
measured, never assumed: it depends on the device, the batch size and Dot's m. It is measured
once per machine, models and batch size, and stored (:func:`stored_speed_ratio`), so that the
same LSD budget means the same schedule in every run on that machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from morse_exp.atomic import write_atomic
from morse_exp.checkpoints import dash_fingerprint
from morse_exp.dash import Dash
from morse_exp.dot import Dot
from morse_exp.generation import autocast


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
    watching_dash = getattr(dot, "watching_dash", nullcontext)
    for _ in range(repeats):
        with watching_dash():  # a DeepCache Dot stores the deep feature its steps reuse
            dash_times.append(median_seconds(lambda: dash(x_ti, t_i, cond), 1, 1, device.type))
        dot_times.append(median_seconds(lambda: dot(x_ts, x_ti, z_ts, t_s, t_i, cond), 1, 1, device.type))
    return SpeedMeasurement(batch_size, statistics.median(dash_times), statistics.median(dot_times))


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def machine_identity(device: str | torch.device) -> dict[str, Any]:
    """What N depends on besides the models: processor (or GPU) model and, on a CPU, the vector
    instructions torch uses (VMs of one processor name differ: AVX2 or AVX-512), threads,
    torch version."""
    device = torch.device(device)
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")] if cpuinfo.is_file() else []
        processor = names[0] if names else platform.processor() or platform.machine()
        processor = f"{processor} ({torch.backends.cpu.get_cpu_capability()})"
    return {"device": device.type, "processor": processor, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def stored_speed_ratio(
    key: dict[str, Any], cache_dir: str | Path, measure: Callable[[], SpeedMeasurement], remeasure: bool = False
) -> tuple[float, Path, bool]:
    """N for ``key`` (models, batch, precision and :func:`machine_identity`), measured once.

    The first call on a machine measures N with ``measure()`` and stores it in
    ``cache_dir/speed_ratio-<hash of key>.json``; later calls read it back, so every run on
    this machine uses the same N whatever the load of the moment (``remeasure=True``
    measures and stores it anew). Returns (N, the file, whether it was measured now).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"speed_ratio-{digest}.json"
    if path.is_file() and not remeasure:
        return float(json.loads(path.read_text())["speed_ratio"]), path, False
    measured = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"speed_ratio": measured.ratio, "dash_seconds": measured.dash_seconds,
              "dot_seconds": measured.dot_seconds, "batch_size": measured.batch_size, "key": key}
    write_atomic(path, json.dumps(record, indent=2, default=str).encode())
    return measured.ratio, path, True


def machine_speed_ratio(
    dash: Dash, dot: Dot, rows: int, device: str, precision: str, cache_dir: str | Path, repeats: int = 7,
    cond: dict | None = None, remeasure: bool = False,
) -> tuple[float, Path, bool]:
    """This machine's stored N for ``dash`` + ``dot`` at ``rows`` samples per call and
    ``precision`` (see :func:`stored_speed_ratio`); measured with their conditioning ``cond``."""
    def measure() -> SpeedMeasurement:
        with autocast(device, precision):
            return measure_speed_ratio(dash, dot, rows, device, repeats, cond=cond)

    key = {"dash": dash_fingerprint(dash), "dot": dot.config, "rows": rows, "precision": str(precision),
           "conditioning": dash.conditioning, **machine_identity(device)}
    return stored_speed_ratio(key, Path(cache_dir) / "speed", measure, remeasure=remeasure)
