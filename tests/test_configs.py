"""Every Hydra config file composes, and what can be built without pretrained weights builds.

Parametrized over the files on disk: a new experiment / scheduler / jump pattern / Dot /
logger / trainer / launcher file is tested as soon as it exists.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import hydra
import pytest
from diffusers import DDPMScheduler
from helpers import save_tiny_dash, tiny_unet
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from test_train import compose_train

import morse_exp  # noqa: F401  (registers the ${asset:...} resolver)
from morse_exp.dash import Dash
from morse_exp.module import MorseModule
from morse_exp.schedule import JumpPattern
from morse_exp.train import run

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    """The option names of a config group, from the files on disk."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def select(group: str, name: str) -> str:
    """A group override; the name is quoted so that numeric names (jump_stride/2) stay strings."""
    return f'{group}="{name}"'


def tiny_dash_for(image_shape: tuple[int, int, int], widths: tuple[int, int] = (8, 16)) -> Dash:
    """A random 2-level UNet Dash for samples of ``image_shape`` (stands in for real weights)."""
    channels, size, _ = image_shape
    return Dash(tiny_unet(size, channels, widths=widths), dict(DDPMScheduler().config))


def build_without_weights(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate dataset, jump pattern, scheduler, Dot and module of a train config.

    The model node is only checked for an importable target unless its weights are on disk;
    Dot and the module are built on a random Dash of the dataset's sample shape.
    """
    target = cfg.model._target_
    module_name, _, attr = target.rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), attr)), target
    datamodule = hydra.utils.instantiate(cfg.dataset)
    jump = hydra.utils.instantiate(cfg.jump_stride)
    assert isinstance(jump, JumpPattern)
    scheduler_factory = hydra.utils.instantiate(cfg.scheduler)
    scheduler = scheduler_factory(base_config=dict(DDPMScheduler().config))
    scheduler.set_timesteps(10)
    pretrained = cfg.model.get("pretrained")
    if pretrained and Path(str(pretrained)).is_dir():
        dash = hydra.utils.instantiate(cfg.model)
    else:
        dash = tiny_dash_for(datamodule.image_shape, widths=(32, 64))
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash)
    module = hydra.utils.instantiate(cfg.module)(
        dash=dash, dot=dot, scheduler=scheduler_factory, max_gap=jump.max_gap,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    assert isinstance(module, MorseModule)
    return {"datamodule": datamodule, "jump": jump, "scheduler": scheduler, "dot": dot, "module": module}


@pytest.fixture(scope="module")
def tiny_dash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_dash(tmp_path_factory.mktemp("dash"), seed=0)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_composes_and_builds(experiment: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, [select("experiment", experiment)])
    built = build_without_weights(cfg)
    assert built["module"].max_gap == built["jump"].max_gap


def test_there_is_a_fast_default_experiment() -> None:
    assert "digits_fast" in options("experiment")


@pytest.mark.parametrize(
    "group", ["scheduler", "jump_stride", "dot", "logger", "trainer"],
)
def test_every_option_of_a_group_composes(group: str, tmp_path: Path) -> None:
    names = options(group)
    assert names, f"conf/{group} is empty"
    for name in names:
        cfg = compose_train(tmp_path, [select(group, name)])
        node = cfg.get(group)
        if group == "logger" and not node:
            continue  # logger=none: no logger at all
        assert "_target_" in node, f"{group}={name} has no _target_"
        if group == "scheduler":
            scheduler = hydra.utils.instantiate(node)(base_config=dict(DDPMScheduler().config))
            scheduler.set_timesteps(10)
            assert node.name == name
        elif group == "jump_stride" and name == "searched":  # reads a search run's schedules.yaml
            assert OmegaConf.is_missing(node, "path") and node._target_.endswith("SearchedPattern")
        elif group == "jump_stride":
            assert isinstance(hydra.utils.instantiate(node), JumpPattern)
        elif group == "logger":
            assert hydra.utils.instantiate(node) is not None
        elif group == "dot":
            # body width 32: divisible by the 32 norm groups of the large Dots
            dot = hydra.utils.instantiate(node)(dash=tiny_dash_for((1, 8, 8), widths=(32, 64)))
            assert dot.config["num_down"] == node.num_down
        elif group == "trainer":
            assert node._target_ in ("lightning.Trainer", "lightning.pytorch.Trainer")


def test_jump_stride_selects_by_name_and_by_value(tmp_path: Path) -> None:
    """``jump_stride=stride3`` as the docs write it, and any stride as ``jump_stride.stride=N``."""
    assert compose_train(tmp_path, ["jump_stride=stride3"]).jump_stride.stride == 3
    assert compose_train(tmp_path, ["jump_stride.stride=7"]).jump_stride.stride == 7


@pytest.mark.parametrize(
    "launcher", sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")) + ["joblib"]
)
def test_hydra_launcher_composes(launcher: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.skip(f"launcher plugin not installed: {error}")
    assert hasattr(module, attr), target


def test_default_experiment_fast_mode_runs_end_to_end(tiny_dash: Path, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, ["experiment=digits_fast", f"model.pretrained={tiny_dash}"])
    assert cfg.trainer.max_steps <= 20, "digits_fast should stay fast"
    metrics, objects = run(cfg)
    assert objects["trainer"].global_step == cfg.trainer.max_steps
    assert {"train/dot_mse", "val/dot_mse", "val/reuse_mse"} <= set(metrics)
    assert (tmp_path / "dot" / "dot.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    record = json.loads((tmp_path / "dot" / "dot.json").read_text())
    assert record["steps"] == cfg.trainer.max_steps
