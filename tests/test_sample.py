"""``python -m morse_exp.sample``: samples of one method at one budget, saved for people and tools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config
from standins import STANDINS

from morse_exp import sample, train

FAST = ["num_samples=12", "speed_ratio=3.0"]


def draw(tmp_path: Path, name: str, overrides: list[str]) -> tuple[dict, Path]:
    run_dir = tmp_path / name
    summary, _ = sample.run(compose_config("sample", [*FAST, *overrides], run_dir))
    return summary, run_dir


def test_baseline_and_reuse_write_grid_npz_pngs_and_their_cost(tmp_path: Path) -> None:
    for method in ("baseline", "reuse"):
        summary, run_dir = draw(tmp_path, method, [f"method={method}", "lsd_budget=4"])
        pixels = np.load(run_dir / "samples.npz")["arr_0"]
        assert pixels.shape == (12, 8, 8, 1) and pixels.dtype == np.uint8
        assert len(list((run_dir / "images").glob("*.png"))) == 12 and (run_dir / "grid.png").is_file()
        assert json.loads((run_dir / "sampling.json").read_text()) == json.loads(json.dumps(summary))
    baseline = json.loads((tmp_path / "baseline" / "sampling.json").read_text())
    reuse = json.loads((tmp_path / "reuse" / "sampling.json").read_text())
    assert (baseline["dash_calls"], baseline["dot_calls"]) == (4, 0)
    assert reuse["dot_calls"] > 0 and reuse["lsd"] <= 4



def test_reuse_follows_the_dot_base_as_in_evaluate(tmp_path: Path) -> None:
    """sample's reuse is evaluate's: on dot.base=x0 under DDPM it carries Dash's data estimate,
    so its samples differ from the eps base's."""
    runs = {base: draw(tmp_path, base, ["method=reuse", "lsd_budget=4", "scheduler=ddpm", f"dot.base={base}",
                                         "save_pngs=false"])[1] for base in ("eps", "x0")}
    eps, x0 = (np.load(runs[base] / "samples.npz")["arr_0"].astype(int) for base in ("eps", "x0"))
    assert np.abs(eps - x0).max() > 10

def test_sample_i_does_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    _, whole = draw(tmp_path, "whole", ["method=baseline", "batch_size=12", "save_pngs=false"])
    _, split = draw(tmp_path, "split", ["method=baseline", "batch_size=5", "save_pngs=false"])
    a, b = (np.load(d / "samples.npz")["arr_0"].astype(int) for d in (whole, split))
    assert np.abs(a - b).max() <= 1  # same noise; CPU kernels differ by batch size in the last bits


def test_morse_uses_the_trained_dot_and_refuses_to_run_without_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dot_checkpoint"):
        draw(tmp_path, "no_dot", ["method=morse"])
    train.run(compose_config("train", ["experiment=digits_fast", "trainer.max_steps=2", "logger=none"],
                             tmp_path / "train"))
    summary, run_dir = draw(tmp_path, "morse", ["method=morse", f"dot_checkpoint={tmp_path / 'train' / 'dot'}"])
    assert summary["dot_calls"] > 0 and np.load(run_dir / "samples.npz")["arr_0"].shape[0] == 12


def test_text_to_image_takes_the_given_prompts(tmp_path: Path) -> None:
    overrides = ["model=sd14", *STANDINS["sd14"](tmp_path / "sd14"), "method=baseline", "lsd_budget=2",
                 "prompts=[a red square,two cats]", "guidance_scale=5.0", "num_samples=3"]
    summary, run_dir = draw(tmp_path, "text", overrides)
    assert summary["prompts"] == ["a red square", "two cats", "a red square"]
    assert np.load(run_dir / "samples.npz")["arr_0"].shape == (3, 16, 16, 3)
