"""Per-sample random streams: sample i draws the same numbers whatever the batch or process.

Each sample owns a ``torch.Generator`` seeded from (seed, sample index) through numpy's
``SeedSequence`` (well-mixed, collision-free for distinct pairs). Initial noise and every
stochastic scheduler step draw from these generators, one per batch element, through
diffusers' ``randn_tensor`` (which draws per generator and concatenates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded with ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed={seed} and index={index} must be >= 0")
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def sample_generators(
    seed: int, indices: Sequence[int], device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One generator per sample index, each seeded by :func:`sample_seed`."""
    return [torch.Generator(device).manual_seed(sample_seed(seed, int(i))) for i in indices]
