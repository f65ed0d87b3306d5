"""Cached Dash stretches (stretches=cached): what is cached, the loss on it, the cache file."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from helpers import compose_config, save_tiny_dash
from safetensors.torch import load_file

from morse_exp.dot import Dot
from morse_exp.module import MorseModule
from morse_exp.schedulers import make_scheduler
from morse_exp.stretches import StretchDataModule, build_stretches
from morse_exp.train import run

TINY = ["dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2", "dataset.batch_size=32",
        "trainer.val_check_interval=2", "+trainer.limit_val_batches=1", "trainer.max_steps=3"]


def ddim_module(dash, max_gap: int = 3, **kwargs) -> MorseModule:
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    return MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=max_gap,
                       fine_steps=[6, 6], **kwargs)


@pytest.mark.parametrize("stepping", ["reuse", "teacher"])
def test_each_cached_step_is_dashs_answer_on_a_stretch_stepped_as_asked(dash, stepping: str):
    """Jump point s = 1 of n = 6, K = 3: two Dot steps per image; the second state is reached
    with the jump point's estimate (reuse, the default), or with Dash's target at the first
    (teacher forcing, the ablation), and every target is Dash's."""
    module = ddim_module(dash)
    module.draw = lambda generator: (6, 1)
    images = [(torch.rand(1, 8, 8) * 2 - 1, 0) for _ in range(4)]
    cached = build_stretches(module, images, group_size=4, passes=1, stepping=stepping)
    assert cached["x_ti"].shape == (8, 1, 8, 8)  # 4 images x 2 Dot steps
    timesteps = make_scheduler("ddim", dash.scheduler_config)
    timesteps.set_timesteps(6)
    t = timesteps.timesteps
    assert cached["t_s"].tolist() == [float(t[1])] * 8
    assert cached["t_i"].tolist() == [float(t[2])] * 4 + [float(t[3])] * 4
    with torch.no_grad():
        assert torch.allclose(cached["z_ts"], dash(cached["x_ts"], cached["t_s"]), atol=1e-5)
        assert torch.allclose(cached["target"], dash(cached["x_ti"], cached["t_i"]), atol=1e-5)
    reused = copy.deepcopy(timesteps).step(cached["z_ts"][:4], t[2], cached["x_ti"][:4]).prev_sample
    forced = copy.deepcopy(timesteps).step(cached["target"][:4], t[2], cached["x_ti"][:4]).prev_sample
    expected, other = (reused, forced) if stepping == "reuse" else (forced, reused)
    assert torch.allclose(cached["x_ti"][4:], expected, atol=1e-5)
    assert not torch.allclose(cached["x_ti"][4:], other, atol=1e-5)
    assert not torch.allclose(cached["target"][:4], cached["z_ts"][:4])  # a stretch, not one state


def test_own_stepping_steps_with_the_starting_dots_estimates_and_keys_the_cache_by_its_weights(dash, tmp_path: Path):
    """stepping="own": the second Dot step's state is reached with the Dot's estimate at the
    first (an untrained Dot's is reuse's); the cache's name changes with the Dot's weights."""
    module = ddim_module(dash)
    module.draw = lambda generator: (6, 1)
    images = [(torch.rand(1, 8, 8) * 2 - 1, 0) for _ in range(4)]
    batches = type("Images", (), {"batch_size": 8})()
    reuse = build_stretches(module, images, group_size=4, passes=1, stepping="reuse")
    untrained = build_stretches(module, images, group_size=4, passes=1, stepping="own")
    assert all(torch.equal(untrained[key], reuse[key]) for key in reuse)
    untrained_key = StretchDataModule(batches, module, tmp_path, stepping="own").key()
    reuse_key = StretchDataModule(batches, module, tmp_path, stepping="reuse").key()
    with torch.no_grad():
        torch.nn.init.normal_(module.dot.head.out.weight, std=0.1)
    own = build_stretches(module, images, group_size=4, passes=1, stepping="own")
    assert StretchDataModule(batches, module, tmp_path, stepping="own").key() != untrained_key
    assert StretchDataModule(batches, module, tmp_path, stepping="reuse").key() == reuse_key
    first = {key: value[:4] for key, value in own.items()}
    with torch.no_grad():
        estimate = first["z_ts"] + module.dot(first["x_ts"], first["x_ti"], first["z_ts"], first["t_s"], first["t_i"], None)
    timesteps = make_scheduler("ddim", dash.scheduler_config)
    timesteps.set_timesteps(6)
    stepped = timesteps.step(estimate, timesteps.timesteps[2], first["x_ti"]).prev_sample
    assert torch.allclose(own["x_ti"][4:], stepped, atol=1e-5)
    assert not torch.allclose(own["x_ti"][4:], reuse["x_ti"][4:], atol=1e-5)


def test_an_untrained_dots_cached_loss_is_reuses_error(dash):
    module = ddim_module(dash)
    images = [(torch.rand(1, 8, 8) * 2 - 1, 0) for _ in range(6)]
    cached = build_stretches(module, images, group_size=3, passes=2)
    reuse = (cached["z_ts"] - cached["target"]).pow(2).flatten(1).mean(1).mean()
    assert torch.allclose(module.cached_loss(cached), reuse)
    assert torch.allclose(module.cached_loss(cached, relative=True), torch.tensor(1.0))
    assert len(cached["t_s"]) >= 2 * 6  # every image walked in each pass, >= 1 Dot step each


def test_the_x0_base_is_what_reuse_steps_on_and_keys_its_own_cache(dash, tmp_path: Path):
    """With dot.base=x0 an untrained Dot's (reuse's) estimate at a Dot step is the x0 base, the
    cached loss is relative to it, and the cache is another one than the eps base's."""
    eps_module = ddim_module(dash)
    batches = type("Images", (), {"batch_size": 8})()
    eps_key = StretchDataModule(batches, eps_module, tmp_path, stepping="reuse").key()
    dash = copy.deepcopy(dash)
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, base="x0")
    module = MorseModule(dash, dot, lambda base_config: make_scheduler("ddpm", base_config), max_gap=3,
                         fine_steps=[6, 6])
    assert StretchDataModule(batches, module, tmp_path, stepping="reuse").key() != eps_key
    images = [(torch.rand(1, 8, 8) * 2 - 1, 0) for _ in range(4)]
    cached = build_stretches(module, images, group_size=4, passes=1)
    step = module.stretch_step(*(cached[key] for key in ("x_ts", "z_ts", "t_s", "x_ti", "t_i", "target")), None)
    assert not torch.allclose(step.base, step.z_ts, atol=1e-3)  # DDPM's fresh noise: the bases differ
    assert torch.allclose(module.dot_estimate(step), step.base)
    assert torch.allclose(module.cached_loss(cached, relative=True), torch.tensor(1.0))


def test_training_on_cached_stretches_builds_the_cache_once_and_trains_the_same_dot(tmp_path: Path):
    dash = save_tiny_dash(tmp_path / "dash", seed=0)
    cache = tmp_path / "cache"
    overrides = [f"model.pretrained={dash}", *TINY, "jump_stride=stride2", "stretches=cached", "stretches.passes=1",
                 f"paths.cache_dir={cache}"]
    run(compose_config("train", overrides, tmp_path / "first"))
    (cache_file,) = (cache / "stretches").glob("*.safetensors")
    written = cache_file.stat().st_mtime_ns
    run(compose_config("train", overrides, tmp_path / "second"))
    assert cache_file.stat().st_mtime_ns == written  # reused, not rebuilt
    first, second = (load_file(tmp_path / run_dir / "dot" / "dot.safetensors") for run_dir in ("first", "second"))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert first["head.out.weight"].abs().sum() > 0  # it trained (an untrained Dot's head is zero)
    run(compose_config("train", [*overrides, "stretches.passes=2"], tmp_path / "third"))
    assert len(list((cache / "stretches").glob("*.safetensors"))) == 2  # other settings, another cache


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"passes": 0}, r"^stretches.passes=0 is invalid: use an integer >= 1$"),
    ({"stepping": "dot"}, r"^stretches.stepping='dot' is invalid: use one of own, reuse, teacher$"),
    ({"jump_states": "sampled"}, r"^module.jump_states=sampled is invalid with stretches=cached"),
])
def test_bad_cache_settings_are_refused_in_one_line(dash, tmp_path: Path, kwargs: dict, message: str):
    module = ddim_module(dash, jump_states=kwargs.pop("jump_states", "forward"))
    images = type("Images", (), {"batch_size": 8})()
    with pytest.raises(ValueError, match=message):
        StretchDataModule(images, module, tmp_path, **kwargs)


def test_gaps_wider_than_one_dot_step_are_warned_of(dash, tmp_path: Path):
    images = type("Images", (), {"batch_size": 8})()
    stride2 = ddim_module(copy.deepcopy(dash), max_gap=2)
    with pytest.warns(UserWarning, match=r"gaps up to 2: the Dot steps after the first .* train on reuse states"):
        StretchDataModule(images, ddim_module(dash, max_gap=3), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StretchDataModule(images, stride2, tmp_path)  # stride 2: exact, no warning


def test_a_text_conditioned_dash_is_refused_before_any_dash_call(tmp_path: Path):
    text_dash = type("TextDash", (), {"conditioning": "text"})()
    module = type("Module", (), {"dash": text_dash, "jump_states": "forward"})()
    with pytest.raises(ValueError, match=r"^stretches=cached is invalid for a text-conditioned Dash .* use stretches=live$"):
        StretchDataModule(type("Images", (), {"batch_size": 8})(), module, tmp_path)
