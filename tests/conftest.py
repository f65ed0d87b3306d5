"""Shared fixtures: tiny diffusers models built from config (random weights, no downloads)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from morse_exp.dash import Dash

torch.set_num_threads(1)


def tiny_unet(sample_size: int = 8, channels: int = 1, seed: int = 0) -> UNet2DModel:
    """A 2-level UNet2DModel (widths 8, 16; attention at level 2) with random weights."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    ).eval()


@pytest.fixture
def training_config() -> dict:
    return dict(DDPMScheduler(num_train_timesteps=1000).config)


@pytest.fixture
def dash(training_config: dict) -> Dash:
    return Dash(tiny_unet(), training_config)


@pytest.fixture
def make_unet():
    """The :func:`tiny_unet` factory, for tests that need several or differently sized UNets."""
    return tiny_unet
