"""Speed and memory benchmark: ``python -m morse_exp.bench`` (``make bench``).

Measures on the current device, all as ratios taken within one run:
- ``dot_speed_ratio``: N = Dash seconds per step / Dot seconds per step, per batch size;
- ``rival_speed_ratio``: the same ratio for each rival of ``rivals`` (DeepCache's cached step);
- ``sampler_overhead``: our sampling loop over diffusers' own ``DDIMPipeline`` (every step
  Dash, same UNet, steps, batch and seeds; both include turning samples into numpy images);
- ``memory``: parameter bytes of Dash alone and of Dash + Dot (shared tensors counted once),
  and on CUDA the peak allocated bytes of a Dash step and of a Dot step.
Writes ``outputs/bench/bench.json`` and prints a table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import hydra
import torch
from diffusers import DDIMPipeline, DDIMScheduler
from omegaconf import DictConfig

from morse_exp.atomic import write_atomic
from morse_exp.cli import entry_point
from morse_exp.dash import Dash
from morse_exp.dot import Dot
from morse_exp.generation import autocast
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import make_scheduler
from morse_exp.seeding import sample_generators
from morse_exp.speed import SpeedMeasurement, measure_speed_ratio, median_seconds


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of distinct parameter and buffer storages (a shared tensor counts once)."""
    storages = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def sampler_overhead(dash: Dash, steps: int, batch_size: int, device: str, repeats: int) -> dict[str, float]:
    """Median seconds of our loop and of DDIMPipeline (interleaved runs) and their ratio."""
    pipeline = DDIMPipeline(unet=dash.unet, scheduler=DDIMScheduler.from_config(dash.scheduler_config))
    pipeline.set_progress_bar_config(disable=True)
    seeds = range(batch_size)

    def ours() -> None:
        x, _ = sample(
            dash, make_scheduler("ddim", dash.scheduler_config), DashSchedule.every_step(steps),
            sample_generators(0, seeds, device),
        )
        (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()

    def theirs() -> None:
        pipeline(batch_size=batch_size, generator=sample_generators(0, seeds, device),
                 num_inference_steps=steps, output_type="np")

    ours_times, theirs_times = [], []
    for _ in range(repeats):
        ours_times.append(median_seconds(ours, 1, 1 if not ours_times else 0, device))
        theirs_times.append(median_seconds(theirs, 1, 1 if not theirs_times else 0, device))
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    return {"ours_seconds": ours_s, "diffusers_seconds": theirs_s, "ratio": ours_s / theirs_s}


def peak_step_bytes(dash: Dash, dot: Dot, batch_size: int, device: str) -> dict[str, int | None]:
    """CUDA peak allocated bytes during one Dash step and one Dot step (None on CPU)."""
    if device != "cuda":
        return {"dash_step_peak_bytes": None, "dot_step_peak_bytes": None}
    x = torch.randn(batch_size, *dash.sample_shape, device=device)
    t_s, t_i = torch.tensor(600, device=device), torch.tensor(500, device=device)
    peaks = {}
    with torch.no_grad():
        for name, call in (("dash", lambda: dash(x, t_i)), ("dot", lambda: dot(x, x, x, t_s, t_i))):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            call()
            torch.cuda.synchronize()
            peaks[f"{name}_step_peak_bytes"] = torch.cuda.max_memory_allocated()
    return peaks


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    device = cfg.device
    dash = hydra.utils.instantiate(cfg.model).to(device)
    dash_bytes = parameter_bytes(dash)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).to(device).eval()
    rivals = {name: hydra.utils.instantiate(cfg[name])(dash=dash).to(device) for name in cfg.rivals}
    with autocast(device, cfg.precision):
        speed = [measure_speed_ratio(dash, dot, b, device, cfg.repeats) for b in cfg.batch_sizes]
        rival_speed = {name: [measure_speed_ratio(dash, rival, b, device, cfg.repeats) for b in cfg.batch_sizes]
                       for name, rival in rivals.items()}
    overhead = sampler_overhead(dash, cfg.overhead_steps, cfg.overhead_batch_size, device, cfg.repeats)
    result = {
        "device": device,
        "precision": cfg.precision,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "model": dash.source,
        "dot_config": dot.config,
        "dot_speed_ratio": speed_table(speed),
        "rival_speed_ratio": {name: {"config": rivals[name].config, "speed_ratio": speed_table(measured)}
                              for name, measured in rival_speed.items()},
        "sampler_overhead": overhead,
        "memory": {
            "dash_parameter_bytes": dash_bytes,
            "dash_plus_dot_parameter_bytes": parameter_bytes(dot),
            "dot_trainable_parameters": sum(p.numel() for _, p in dot.trainable_parameters()),
            **peak_step_bytes(dash, dot, max(cfg.batch_sizes), device),
        },
    }
    path = Path(cfg.output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, indent=2).encode())
    print(format_table(result))
    print(f"written to {path}")
    return result, {"dash": dash, "dot": dot}


def speed_table(measurements: list[SpeedMeasurement]) -> dict[str, dict[str, float]]:
    """Batch size -> {ratio, dash_seconds, dot_seconds} (seconds per step)."""
    return {str(s.batch_size): {"ratio": s.ratio, "dash_seconds": s.dash_seconds, "dot_seconds": s.dot_seconds}
            for s in measurements}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"device: {result['device']} ({result['machine']})", "",
             "| batch | Dash s/step | Dot s/step | N = Dash/Dot |", "|---:|---:|---:|---:|"]
    for batch, s in result["dot_speed_ratio"].items():
        lines.append(f"| {batch} | {s['dash_seconds']:.4f} | {s['dot_seconds']:.4f} | {s['ratio']:.2f} |")
    for name, rival in result.get("rival_speed_ratio", {}).items():
        ratios = ", ".join(f"{s['ratio']:.2f} at batch {batch}" for batch, s in rival["speed_ratio"].items())
        lines.append(f"{name} {rival['config']}: N = Dash / cheap step = {ratios}")
    o, m = result["sampler_overhead"], result["memory"]
    lines += ["", (f"sampler overhead (ours / diffusers DDIMPipeline): {o['ratio']:.3f} "
                   f"({o['ours_seconds']:.3f} s vs {o['diffusers_seconds']:.3f} s)"),
              (f"parameters: Dash {m['dash_parameter_bytes'] / 2**20:.2f} MiB, Dash + Dot "
               f"{m['dash_plus_dot_parameter_bytes'] / 2**20:.2f} MiB "
               f"({m['dot_trainable_parameters']:,} trainable Dot parameters)")]
    return "\n".join(lines)


@entry_point("bench")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    main()
