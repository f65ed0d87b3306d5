"""T-Stitch as a Dot: a small Dash at the lead steps, Dash after; fraction 0 is the baseline."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import DDIMScheduler
from helpers import tiny_unet

from morse_exp.dash import Dash
from morse_exp.dot import Dot
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.stitch import Stitch, StitchPattern


@pytest.mark.parametrize(("fraction", "budget", "ratio"), [(0.0, 5, 3.0), (0.4, 5, 3.0), (0.5, 7.5, 4.0), (1.0, 3, 2.0)])
def test_pattern_spends_the_budget_with_round_fraction_n_small_steps(fraction, budget, ratio):
    schedule = StitchPattern(fraction).fit_budget(budget, ratio)
    n = schedule.num_steps
    assert schedule.lead_steps == round(fraction * n) and schedule.dash_steps == tuple(range(schedule.lead_steps, n))
    assert schedule.lsd(ratio) <= budget + 1e-9 < StitchPattern(fraction).schedule(n + 1).lsd(ratio)
    if fraction == 0:
        assert schedule == DashSchedule.every_step(math.floor(budget))


def run_sampler(dash: Dash, schedule: DashSchedule, dot: torch.nn.Module | None) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    return sample(dash, DDIMScheduler.from_config(dash.scheduler_config), schedule, generators, dot=dot)[0]


def test_lead_steps_run_the_small_model_and_dash_takes_over(dash, training_config):
    small = Dash(tiny_unet(seed=5), training_config)
    calls = []
    small.register_forward_hook(lambda *_: calls.append("small"))
    dash.register_forward_hook(lambda *_: calls.append("dash"))
    schedule = StitchPattern(0.5).schedule(6)
    run_sampler(dash, schedule, Stitch(dash, small, 0.5))
    assert calls == ["small"] * 3 + ["dash"] * 3  # 3 lead steps, then Dash at the other 3


def test_a_small_model_equal_to_dash_reproduces_the_baseline_exactly(dash):
    for fraction in (0.0, 0.5, 1.0):
        stitched = run_sampler(dash, StitchPattern(fraction).schedule(6), Stitch(dash, dash, fraction))
        assert torch.equal(stitched, run_sampler(dash, DashSchedule.every_step(6), None))


def test_lead_steps_with_an_anchored_dot_are_refused(dash):
    with pytest.raises(ValueError, match=r"starts with 2 lead steps, which need an anchor-free model .*not Dot"):
        run_sampler(dash, StitchPattern(0.5).schedule(4), Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4))


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "half", True])
def test_fraction_outside_zero_one_is_refused(dash, fraction):
    with pytest.raises(ValueError, match=rf"^stitch.fraction={fraction!r} is invalid: use a share of the steps in \[0, 1\]"):
        Stitch(dash, dash, fraction)


def test_a_small_model_of_other_data_is_refused(dash, training_config):
    other = Dash(tiny_unet(sample_size=16), training_config)
    with pytest.raises(ValueError, match=r"samples in shape \(1, 16, 16\), Dash .* in \(1, 8, 8\)"):
        Stitch(dash, other, 0.4)


def test_stitch_at_fraction_zero_is_the_baseline_in_evaluate(tiny_dash_dir, tmp_path, run_config):
    from morse_exp.evaluate import run

    cfg = run_config("evaluate", [
        f"model.pretrained={tiny_dash_dir}", f"stitch.small.pretrained={tiny_dash_dir}", "stitch.fraction=0",
        "methods=[baseline,stitch]", "stitch_speed_ratio=3.0", "lsd_budgets=[2,4]", "baseline_reach=1",
        "metric.num_samples=100", "batch_size=50", "bootstrap.resamples=0", "grid_budgets=[]", "logger=none",
        f"paths.cache_dir={tmp_path}/cache", f"metric.extractors_dir={tmp_path}/extractors",
    ], tmp_path / "run")
    summary, objects = run(cfg)
    fid = {(r["method"], r["lsd_budget"]): r["fid"] for r in objects["records"]}
    assert fid[("stitch", 2.0)] == fid[("baseline", 2.0)] and fid[("stitch", 4.0)] == fid[("baseline", 4.0)]
    record = next(r for r in objects["records"] if r["method"] == "stitch")
    assert record["method_settings"]["fraction"] == 0.0 and record["speed_ratio"] == 3.0
    assert "stitch_vs_baseline" in summary["comparisons"]
    assert json.loads((tmp_path / "run" / "speedup.json").read_text())["methods"] == ["baseline", "stitch"]
