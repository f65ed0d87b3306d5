"""Shared fixtures: tiny diffusers models built from config (random weights, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

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


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(config_name: str, overrides: list[str], run_dir: Path) -> DictConfig:
    """Compose a conf/ config as @hydra.main would, with its run directory at ``run_dir``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


@pytest.fixture(scope="session")
def tiny_dash_dir(tmp_path_factory) -> Path:
    """A tiny random Dash saved in diffusers' bare-model layout (for entry-point tests)."""
    directory = tmp_path_factory.mktemp("tiny_dash")
    tiny_unet(seed=11).save_pretrained(directory, safe_serialization=True)
    DDPMScheduler().save_config(directory)
    return directory


@pytest.fixture
def run_config():
    """The :func:`compose_config` helper."""
    return compose_config
