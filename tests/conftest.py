"""Shared fixtures: tiny diffusers models built from config (random weights, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from helpers import compose_config, save_tiny_dash, tiny_unet

from morse_exp.cli import quiet_known_noise
from morse_exp.dash import Dash

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_known_noise():
    """The entry points' filters of messages nobody can act on, for runs called in-process."""
    quiet_known_noise()


@pytest.fixture
def training_config() -> dict:
    return dict(DDPMScheduler(num_train_timesteps=1000).config)


@pytest.fixture
def dash(training_config: dict) -> Dash:
    return Dash(tiny_unet(), training_config)


@pytest.fixture
def make_unet():
    """The :func:`helpers.tiny_unet` factory, for tests that need several or other UNets."""
    return tiny_unet


@pytest.fixture
def run_config():
    """The :func:`helpers.compose_config` helper."""
    return compose_config


@pytest.fixture(scope="session")
def tiny_dash_dir(tmp_path_factory) -> Path:
    """A tiny random Dash saved in diffusers' bare-model layout (for entry-point tests)."""
    return save_tiny_dash(tmp_path_factory.mktemp("tiny_dash"), seed=11)
