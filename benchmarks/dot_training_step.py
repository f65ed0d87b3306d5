"""A Dot training step with live rollouts vs one on cached Dash stretches, measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/dot_training_step.py [model] [repeats]

``model`` is a conf/model/ config (default unet_emoji32, with its own Dot and the stride-4
gaps); batch = its dataset's batch size. A live step (``stretches=live``) walks one
trajectory stretch per group of the batch, Dash at the jump point and at every Dot step; a
cached step (``stretches=cached``) runs Dot alone on a batch of cached Dot steps. Both include
the backward pass and the optimiser step, fp32; the two kinds alternate and the report uses
each kind's fastest step, so the machine's background load affects both alike. A live step
trains on every Dot step of its stretches (K - 1 per image at most), a cached one on one per
example, so the report also gives the ratio per trained Dot step.
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from morse_exp.cli import compose_config
from morse_exp.stretches import build_stretches
from morse_exp.train import build


def main(model: str = "unet_emoji32", repeats: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as run_dir:
        objects = build(compose_config("train", [f"model={model}", "jump_stride=stride4"], run_dir))
    module, datamodule = objects["module"], objects["datamodule"]
    batch = datamodule.batch_size
    images = datamodule.split("train")
    image_batch = torch.stack([images[i][0] for i in range(batch)])
    cached = build_stretches(module, [images[i] for i in range(batch)], batch // module.draws_per_batch, passes=1)
    optimizer = torch.optim.AdamW([p for _, p in module.dot.trainable_parameters()], lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def live() -> torch.Tensor:
        draws = [module.draw(generator) for _ in range(module.draws_per_batch)]
        return module.rollout(image_batch, generator, None, draws)[0]

    def from_cache() -> torch.Tensor:
        rows = torch.randint(len(cached["t_s"]), (batch,), generator=generator)
        return module.cached_loss({key: value[rows] for key, value in cached.items()})

    times: dict[str, list[float]] = {"live": [], "cached": []}
    for _ in range(repeats):
        for kind, loss_of in (("live", live), ("cached", from_cache)):
            start = time.perf_counter()
            loss = loss_of()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times[kind].append(time.perf_counter() - start)
    live_s, cached_s = min(times["live"]), min(times["cached"])
    # Dot steps per stretch, min(K - 1, n - 1 - s), averaged over 10,000 of training's draws
    draws = [module.draw(generator)[:2] for _ in range(10_000)]
    dot_steps_per_image = sum(min(module.max_gap - 1, n - 1 - s) for n, s in draws) / len(draws)
    report = {
        "model": model, "batch": batch, "live_seconds": live_s, "cached_seconds": cached_s,
        "steps_per_second_ratio": live_s / cached_s,
        "live_dot_steps_per_image": dot_steps_per_image,
        "trained_dot_steps_per_second_ratio": live_s / cached_s / dot_steps_per_image,
    }
    print(f"{model}, batch {batch}, fp32, threads {torch.get_num_threads()}: live step {live_s:.3f} s, "
          f"cached step {cached_s:.3f} s: {live_s / cached_s:.2f}x the steps per second; a live step trains "
          f"{dot_steps_per_image:.2f} Dot steps per image, so {report['trained_dot_steps_per_second_ratio']:.2f}x "
          "the trained Dot steps per second")
    return report


if __name__ == "__main__":
    main(*(sys.argv[1:2]), *(int(value) for value in sys.argv[2:3]))
