"""Dot training's wall time as a share of the Dash's pretraining, from step times measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/dot_training_cost.py [precision] [repeats] [dot_steps]

On the 32 px task (``model=unet_emoji32``: the shipped Dash, its slim Dot, the recipe's cached
stretches at stride 3) it times, alternating so that the machine's background load affects all
alike, and keeping each kind's fastest:

- a pretraining step of the Dash's architecture (``morse_exp.pretrain``'s module on a data
  batch: forward, loss, backward, AdamW, EMA);
- a Dot training step on cached stretches (Dot alone on a batch of cached Dot steps, backward,
  AdamW), what the recipe's rounds run;
- the stretch cache, per image and pass (``build_stretches`` with the Dash's own stepping, on a
  few groups of images), which each round builds once before its steps (fp32, no grad, as
  ``stretches=cached`` builds it).

``precision``: ``32`` or ``bf16`` (bf16 autocast for both training steps, as
``trainer.precision=bf16-mixed``; default bf16, what the project trains with). A round of the
recipe is its cache (``passes`` x the training images) plus ``dot_steps`` steps (default 5,000);
the report gives its wall time as a share of the shipped Dash's pretraining (the steps its
provenance records), both at the step times measured here.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import torch

from morse_exp.cli import compose_config
from morse_exp.stretches import build_stretches
from morse_exp.train import build

DASH = Path(__file__).resolve().parents[1] / "src" / "morse_exp" / "assets" / "dash_emoji32"
CACHE_GROUPS = 4  # groups of images the stretch cache is timed on


def pretraining_step(run_dir: str) -> tuple[Any, Callable[[], torch.Tensor]]:
    """``morse_exp.pretrain``'s module on the 32 px task (fresh weights) and a closure that
    computes its training loss on one data batch (the dataset's batch size)."""
    cfg = compose_config("pretrain", ["dataset=emoji32", "architecture=unet_emoji32"], run_dir)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    module = hydra.utils.instantiate(cfg.pretraining)(
        unet=hydra.utils.instantiate(cfg.architecture), noise_scheduler=hydra.utils.instantiate(cfg.noise_scheduler),
        autoencoder=None, init_steps=0, history=[],
    )
    images = datamodule.split("train")
    batch = (torch.stack([images[i][0] for i in range(datamodule.batch_size)]), None)
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    return module, lambda: module.training_step(batch, 0)


def main(precision: str = "bf16", repeats: int = 3, dot_steps: int = 5000) -> dict[str, float]:
    if precision not in ("32", "bf16"):
        raise ValueError(f"precision={precision!r} is invalid: use 32 or bf16")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext
    with tempfile.TemporaryDirectory() as run_dir:
        objects = build(compose_config("train", [
            "model=unet_emoji32", "dot=slim", "jump_stride=stride3", "stretches=cached", "stretches.stepping=own",
        ], run_dir))
        pretraining, pretraining_loss = pretraining_step(run_dir)
    module, stretches = objects["module"], objects["stretches"]
    batch, group_size = stretches.batch_size, stretches.group_size
    images = objects["datamodule"].split("train")
    pretraining_optimizer = torch.optim.AdamW(pretraining.unet.parameters(), lr=1e-4)
    dot_optimizer = torch.optim.AdamW([p for _, p in module.dot.trainable_parameters()], lr=1e-4)
    cache_images = [images[i] for i in range(CACHE_GROUPS * group_size)]
    cached = build_stretches(module, cache_images, group_size, passes=1, stepping="own")
    generator = torch.Generator().manual_seed(0)

    def dot_loss() -> torch.Tensor:
        rows = torch.randint(len(cached["t_s"]), (batch,), generator=generator)
        return module.cached_loss({key: value[rows] for key, value in cached.items()}, relative=True)

    def train_step(loss_of: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer,
                   after: Callable[[], None] = lambda: None) -> float:
        start = time.perf_counter()
        with autocast():
            loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        after()
        return time.perf_counter() - start

    def cache_per_image() -> float:
        start = time.perf_counter()
        build_stretches(module, cache_images, group_size, passes=1, stepping="own")
        return (time.perf_counter() - start) / len(cache_images)

    times: dict[str, list[float]] = {"pretraining_step": [], "dot_step": [], "cache_per_image": []}
    for _ in range(repeats):
        times["pretraining_step"].append(train_step(pretraining_loss, pretraining_optimizer, pretraining.on_train_batch_end))
        times["dot_step"].append(train_step(dot_loss, dot_optimizer))
        times["cache_per_image"].append(cache_per_image())
    best = {kind: min(values) for kind, values in times.items()}
    pretrain_steps = json.loads((DASH / "provenance.json").read_text())["steps"]
    cache_seconds = best["cache_per_image"] * len(images) * stretches.passes
    round_seconds = cache_seconds + dot_steps * best["dot_step"]
    pretraining_seconds = pretrain_steps * best["pretraining_step"]
    report = {
        "precision": precision, "threads": torch.get_num_threads(), "batch": batch, **best,
        "dot_step_over_pretraining_step": best["dot_step"] / best["pretraining_step"],
        "cache_images": len(images) * stretches.passes, "cache_seconds": cache_seconds, "dot_steps": dot_steps,
        "round_seconds": round_seconds, "pretrain_steps": pretrain_steps, "pretraining_seconds": pretraining_seconds,
        "round_over_pretraining": round_seconds / pretraining_seconds,
    }
    print(f"32 px task, {precision}, {report['threads']} thread(s), batch {batch}: pretraining step "
          f"{best['pretraining_step']:.3f} s, cached Dot step {best['dot_step']:.3f} s "
          f"({report['dot_step_over_pretraining_step']:.2f} of a pretraining step), stretch cache "
          f"{best['cache_per_image'] * 1000:.1f} ms per image-pass")
    print(f"one recipe round: cache of {report['cache_images']} image-passes {cache_seconds / 60:.1f} min + "
          f"{dot_steps} Dot steps {dot_steps * best['dot_step'] / 60:.1f} min = {round_seconds / 60:.1f} min; "
          f"pretraining {pretrain_steps} steps {pretraining_seconds / 60:.1f} min; "
          f"round / pretraining = {report['round_over_pretraining']:.2f}")
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(args[:1]), *(int(value) for value in args[1:3]))
