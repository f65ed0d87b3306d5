"""Generate many samples in batches, sharded across processes by sample index.

Sample i always comes from the generator seeded by (seed, i) and, for a conditional Dash,
from context i (its prompt or class label), so the images, and every metric computed on
them, are the same whatever the batch size or number of processes.
With ``torch.distributed`` initialised, rank r generates the indices r, r + W, r + 2W, ...
and all ranks receive the full, index-ordered result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from morse_exp.dash import Dash
from morse_exp.dot import Dot
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.seeding import sample_generators


@dataclass(frozen=True)
class Generated:
    """Decoded images (N, C, H, W) in [-1, 1] on the CPU, in sample-index order, and cost.

    ``seconds`` is the sampling loops' total time (decoding excluded; counted separately in
    ``decode_seconds``), the slowest rank's when sharded.
    """

    images: Tensor
    seconds: float
    decode_seconds: float


def generate(
    dash: Dash,
    make_scheduler: Callable[[], Any],
    schedule: DashSchedule,
    seed: int,
    num_samples: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    dot: Dot | None = None,
    precision: str = "32",
    progress: str | None = None,
    contexts: Sequence[Any] | None = None,
    guidance_scale: float | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Generated:
    """Samples 0..num_samples-1 of ``schedule``; each rank generates its shard, all get all.

    Args:
        make_scheduler: returns a fresh scheduler (multistep schedulers keep state).
        contexts: per sample index, its prompt or class label (conditional Dash only).
        guidance_scale: classifier-free guidance weight (text-conditioned Dash), or None.
        precision: "32" or "bf16" (autocast on the device).
        progress: label of a progress bar (None: no bar).
        on_progress: called after every sampling step with the samples it advanced: a batch's
            samples (all ranks' together) spread evenly over its steps, so that a long batch
            reports as it goes.
    """
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    indices = list(range(rank, num_samples, world))
    images, seconds, decode_seconds = [], 0.0, 0.0
    # disable=None: no bar when stderr is not a terminal (a log file gets the sweep's lines instead)
    bar = tqdm(total=len(indices), desc=progress, disable=True if progress is None or rank != 0 else None, leave=False)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        with autocast(device, precision):
            cond = dash.condition(
                None if contexts is None else [contexts[i] for i in chunk], guided=guidance_scale is not None
            )
            share = len(chunk) * world / schedule.num_steps
            x, batch_stats = sample(
                dash, make_scheduler(), schedule, sample_generators(seed, chunk, device), dot=dot,
                cond=cond, guidance_scale=guidance_scale,
                callback=None if on_progress is None else lambda _step, share=share: on_progress(share),
            )
            decode_start = time.perf_counter()
            images.append(dash.decode(x).float().cpu())
            decode_seconds += time.perf_counter() - decode_start
        seconds += batch_stats.seconds
        bar.update(len(chunk))
    bar.close()
    local = Generated(
        images=torch.cat(images) if images else torch.empty(0, *dash.sample_shape),
        seconds=seconds,
        decode_seconds=decode_seconds,
    )
    return _gather(local, indices, num_samples, world)


def _gather(local: Generated, indices: list[int], num_samples: int, world: int) -> Generated:
    """All shards' images in index order on every rank; seconds of the slowest rank."""
    if world == 1:
        return local
    shards: list[Any] = [None] * world
    dist.all_gather_object(shards, (indices, local))
    images = torch.empty(num_samples, *local.images.shape[1:])
    for shard_indices, shard in shards:
        images[shard_indices] = shard.images
    return Generated(
        images=images,
        seconds=max(s.seconds for _, s in shards),
        decode_seconds=max(s.decode_seconds for _, s in shards),
    )


def autocast(device: str | torch.device, precision: str | int) -> AbstractContextManager:
    """The context that runs model calls at ``precision``: "32" (as is) or "bf16" (autocast).

    ``precision=32`` typed on a command line arrives as an int and means "32".
    """
    if str(precision) == "32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"precision={precision!r} is invalid: use '32' or 'bf16'")
