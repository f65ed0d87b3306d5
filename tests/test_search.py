"""Schedule search: the scan and coordinate search on toy scores with a known optimum, the saved
pattern's round trip through its config, and a search + evaluate run on a tiny Dash."""

from __future__ import annotations

import json
import math

import hydra
import pytest
import torch
from omegaconf import OmegaConf

import morse_exp.search as search_module
from morse_exp.checkpoints import save_dot
from morse_exp.dot import Dot
from morse_exp.evaluate import run as evaluate
from morse_exp.loading import load_dash
from morse_exp.schedule import DashSchedule, SearchedPattern
from morse_exp.search import affordable_schedules, refine, run, search_budget


@pytest.mark.parametrize(("budget", "ratio", "max_gap"), [(3, 4.0, 4), (5, 4.0, 3), (6.5, 5.58, 8), (4, 1.0, 2)])
def test_affordable_schedules_fit_the_budget_with_the_most_dash_steps(budget, ratio, max_gap):
    schedules = affordable_schedules(budget, ratio, max_gap, (1, 200))
    assert schedules and len({s.num_steps for s in schedules}) == len(schedules)
    for s in schedules:
        assert s.lsd(ratio) <= budget + 1e-9 and s.max_gap <= max_gap
        one_more = s.dash_calls + 1 + (s.num_steps - s.dash_calls - 1) / ratio
        assert s.dash_calls == s.num_steps or one_more > budget + 1e-9  # no Dash step left unspent
    assert math.floor(budget) in {s.num_steps for s in schedules if s.dash_calls == s.num_steps}


def test_refine_finds_the_optimum_of_a_separable_score():
    target = (0, 2, 7, 11)
    score = lambda s: -sum((p - q) ** 2 for p, q in zip(s.dash_steps, target, strict=True))
    best, value = refine(DashSchedule.spread(12, 4), score, max_gap=5, max_rounds=20)
    assert best.dash_steps == target and value == 0


def test_refine_keeps_gaps_within_what_dot_was_trained_on():
    score = lambda s: -abs(s.dash_steps[1] - 9)
    best, _ = refine(DashSchedule.spread(12, 3), score, max_gap=5, max_rounds=20)
    assert best.max_gap <= 5 and best.dash_steps[1] == 5


def test_search_budget_finds_the_known_best_step_count_and_positions():
    """At 5 LSD and N = 4, n = 10 affords 3 Dash steps; the score is best at n = 10 with Dash at
    0, 4, 8 (reached by refining the scan's n = 10 start, not its best-scored n = 11 start)."""
    def score(s: DashSchedule) -> float:
        target = (0, 4, 8)[: s.dash_calls] + tuple(range(9, 9 + max(0, s.dash_calls - 3)))
        return -((s.num_steps - 10) ** 2) - sum((p - q) ** 2 for p, q in zip(s.dash_steps, target, strict=True))

    found = search_budget(5, 4.0, 4, (1, 100), score, refine_top=2, max_rounds=10)
    assert (found["schedule"].num_steps, found["schedule"].dash_steps) == (10, (0, 4, 8)) and found["score"] == 0
    assert set(found["strides"]) == {1, 2, 3, 4}
    assert found["score"] >= max(value for _, value in found["strides"].values())


@pytest.fixture
def searched_dot(tiny_dash_dir, tmp_path):
    dash = load_dash(str(tiny_dash_dir))
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    torch.nn.init.normal_(dot.head.out.weight, std=0.05)
    return save_dot(dot, tmp_path / "dot", {"scheduler": "ddim", "coverage": {"max_gap": 3, "fine_steps": [2, 40]}})


def test_search_writes_a_pattern_that_evaluate_reads_back(tiny_dash_dir, searched_dot, tmp_path, run_config):
    common = [f"model.pretrained={tiny_dash_dir}", "dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2",
              "dot.num_down=1", "speed_ratio=3.0", f"paths.cache_dir={tmp_path}/cache", f"dot_checkpoint={searched_dot}"]
    cfg = run_config("search", [*common, "lsd_budgets=[2,3]", "num_samples=16", "batch_size=16", "max_rounds=2"],
                     tmp_path / "search")
    summary, objects = run(cfg)
    path = tmp_path / "search" / "schedules.yaml"
    pattern = hydra.utils.instantiate(OmegaConf.create({"_target_": "morse_exp.schedule.SearchedPattern",
                                                        "path": str(path)}))
    for budget in (2.0, 3.0):
        schedule = objects["found"][budget]["schedule"]
        assert pattern.fit_budget(budget, 3.0) == schedule and schedule.lsd(3.0) <= budget + 1e-9
        assert schedule.max_gap <= 3 and 2 <= schedule.num_steps <= 40
        scored = {(r["num_steps"], tuple(r["dash_steps"])): r["psnr"] for r in summary["scored"]}
        assert objects["found"][budget]["score"] == max(v for (n, steps), v in scored.items()
                                                       if DashSchedule(n, steps).lsd(3.0) <= budget + 1e-9)
    assert json.loads((tmp_path / "search" / "search.json").read_text())["schedules"]["2.0"]["num_steps"]
    assert "searched" in (tmp_path / "search" / "search.md").read_text()

    eval_cfg = run_config("evaluate", [
        *common, "jump_stride=searched", f"jump_stride.path={path}", "lsd_budgets=[2,3]", "seed=1",
        "metric.num_samples=100", "batch_size=50", "baseline_reach=1", "bootstrap.resamples=0", "logger=none",
        "grid_budgets=[]", f"metric.extractors_dir={tmp_path}/extractors",
    ], tmp_path / "evaluate")
    _, eval_objects = evaluate(eval_cfg)
    morse = {r["lsd_budget"]: r for r in eval_objects["records"] if r["method"] == "morse"}
    assert {b: (r["num_steps"], r["dash_calls"]) for b, r in morse.items()} == {
        b: (pattern.schedules[b].num_steps, pattern.schedules[b].dash_calls) for b in (2.0, 3.0)}


def test_a_search_run_again_measures_only_what_it_had_not(tiny_dash_dir, searched_dot, tmp_path, run_config,
                                                          monkeypatch):
    common = [f"model.pretrained={tiny_dash_dir}", "dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2",
              "dot.num_down=1", "speed_ratio=3.0", f"paths.cache_dir={tmp_path}/cache", f"dot_checkpoint={searched_dot}",
              "num_samples=16", "batch_size=16", "max_rounds=1", "reference_steps=4"]
    run_dir = tmp_path / "search"
    first, _ = run(run_config("search", [*common, "lsd_budgets=[2]"], run_dir))
    measured = (run_dir / "measured.jsonl").read_text().splitlines()
    assert len(measured) == len(first["scored"])
    drawn = []
    real_generate = search_module.generate
    monkeypatch.setattr(search_module, "generate", lambda *args, **kwargs: drawn.append(args[2]) or real_generate(
        *args, **kwargs))
    again, _ = run(run_config("search", [*common, "lsd_budgets=[2,3]"], run_dir))
    assert again["schedules"][2.0] == first["schedules"][2.0]
    lines = (run_dir / "measured.jsonl").read_text().splitlines()
    assert lines[: len(measured)] == measured
    # only the new budget's schedules were drawn, each once, and the PSNR reference once
    new = [json.loads(line) for line in lines[len(measured):]]
    assert len(drawn) == len(new) + 1 and drawn.count(DashSchedule.every_step(4)) == 1
    assert {(r["num_steps"], tuple(r["dash_steps"])) for r in new}.isdisjoint(
        (r["num_steps"], tuple(r["dash_steps"])) for r in first["scored"])


def test_searched_pattern_refuses_a_budget_it_has_not_and_a_smaller_n(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text("speed_ratio: 4.0\nschedules:\n  5.0: {num_steps: 10, dash_steps: [0, 4, 8]}\n")
    pattern = SearchedPattern(str(path))
    assert pattern.fit_budget(5, 4.0) == DashSchedule(10, (0, 4, 8)) and pattern.max_gap == 4
    with pytest.raises(ValueError, match=r"^LSD budget 6 has no searched schedule in .* \(it holds 5\)"):
        pattern.fit_budget(6, 4.0)
    with pytest.raises(ValueError, match=r"costs 5\.33 LSD at this run's N = 3\.00: search again with this N"):
        pattern.fit_budget(5, 3.0)


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    ("speed_ratio: [", "cannot be read as YAML"),
    ("schedules: {}\n", "not a schedule search record"),
    ("speed_ratio: 4\nschedules:\n  5.0: {num_steps: 10, dash_steps: [1, 4]}\n", "the schedule for 5.0 LSD is invalid"),
])
def test_bad_searched_pattern_file_is_one_line(tmp_path, content, words):
    path = tmp_path / "schedules.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=rf"^jump_stride.path={path}[: ].*{words}") as caught:
        SearchedPattern(str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("budget", "ratio", "max_gap"), [(3, 4.0, 4), (5, 4.0, 3), (8, 5.58, 4)])
def test_the_progress_bound_holds_the_schedules_a_search_scores(budget, ratio, max_gap):
    from morse_exp.search import most_scored

    scored = set()

    def score(s: DashSchedule) -> float:
        scored.add((s.num_steps, s.dash_steps))
        return -abs(s.num_steps - 9) - s.dash_steps[-1] * 0.01

    search_budget(budget, ratio, max_gap, (1, 100), score, refine_top=2, max_rounds=3)
    assert len(scored) <= most_scored(budget, ratio, max_gap, (1, 100), 2, 3)


def test_a_dot_trained_for_a_searched_pattern_covers_its_widest_gap(tiny_dash_dir, tmp_path, run_config):
    from morse_exp.train import build

    path = tmp_path / "schedules.yaml"
    path.write_text("speed_ratio: 4.0\nschedules:\n  5.0: {num_steps: 10, dash_steps: [0, 5, 8]}\n")
    cfg = run_config("train", [f"model.pretrained={tiny_dash_dir}", "dot.width=8", "dot.norm_groups=4",
                               "dot.lora_rank=2", "jump_stride=searched", f"jump_stride.path={path}"], tmp_path / "run")
    assert build(cfg)["module"].max_gap == 5


def test_speedup_objective_reads_each_schedules_fid_off_the_calibration_baseline(
        tiny_dash_dir, searched_dot, tmp_path, run_config):
    """objective=speedup scores a schedule by the baseline's cost for its FID (read off every-step
    Dash at 2..4 steps on the same calibration samples) over the schedule's own LSD at N."""
    from morse_exp.report import lossless_speedup

    cfg = run_config("search", [
        f"model.pretrained={tiny_dash_dir}", "dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2", "dot.num_down=1",
        "speed_ratio=3.0", f"paths.cache_dir={tmp_path}/cache", f"dot_checkpoint={searched_dot}", "objective=speedup",
        "lsd_budgets=[2]", "baseline_reach=2", "num_samples=80", "batch_size=80", "max_rounds=1",
        f"metric.extractors_dir={tmp_path}/extractors"], tmp_path / "search")
    summary, objects = run(cfg)
    assert [point["lsd"] for point in summary["baseline"]] == [2.0, 3.0, 4.0]
    for row in summary["scored"]:
        cost = DashSchedule(row["num_steps"], tuple(row["dash_steps"])).lsd(3.0)
        expected = lossless_speedup(summary["baseline"], [{"lsd": cost, "fid": row["fid"]}])[0]["speedup"]
        assert row["speedup"] == pytest.approx(expected, rel=1e-12)
    assert objects["found"][2.0]["score"] == max(row["speedup"] for row in summary["scored"])
    assert "speedup, higher is better" in (tmp_path / "search" / "search.md").read_text()
