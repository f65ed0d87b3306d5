"""Evaluate: resumable sweeps, sharded generation, and refusals before any sampling."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import save_tiny_dash

from morse_exp.checkpoints import save_dot
from morse_exp.dot import Dot
from morse_exp.evaluate import check_budgets, run
from morse_exp.fidelity import PSNR_CAP
from morse_exp.generation import generate
from morse_exp.loading import load_dash
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import make_scheduler
from morse_exp.summary import write_summary

TINY = ["dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2", "dot.num_down=1", "metric.num_samples=100",
        "batch_size=50", "speed_ratio=4.0", "lsd_budgets=[2,3]", "grid_budgets=[3]", "logger=none"]


@pytest.fixture
def dot_dir(tiny_dash_dir, tmp_path):
    """An untrained Dot saved as a train run would save it (for ddim)."""
    dash = load_dash(str(tiny_dash_dir))
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    torch.nn.init.normal_(dot.head.out.weight, std=0.05)
    return save_dot(dot, tmp_path / "dot", {"scheduler": "ddim"})


@pytest.fixture
def evaluate(run_config):
    def _evaluate(tiny_dash_dir, run_dir, *overrides):
        isolated = [f"metric.extractors_dir={run_dir}/extractors", f"paths.cache_dir={run_dir.parent}/cache"]
        cfg = run_config("evaluate", [f"model.pretrained={tiny_dash_dir}", *TINY, *isolated, *overrides], run_dir)
        return run(cfg)

    return _evaluate


def test_sweep_writes_every_output_and_resumes_without_recomputing(tiny_dash_dir, dot_dir, tmp_path, evaluate):
    run_dir = tmp_path / "run"
    summary, _ = evaluate(tiny_dash_dir, run_dir, f"dot_checkpoint={dot_dir}")
    for name in ("results.jsonl", "speedup.json", "speedup.md", "fid_vs_lsd.png", "config.yaml",
                 "samples/morse_lsd3.png"):
        assert (run_dir / name).is_file(), name
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # the baseline also runs from 2 LSD up to baseline_reach (4) x the largest budget
    assert sorted((r["method"], r["lsd_budget"]) for r in records) == sorted(
        [(m, b) for m in ("reuse", "morse", "oracle") for b in (2.0, 3.0)]
        + [("baseline", b) for b in (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)]
    )
    assert all(r["num_samples"] == 100 and r["seed_range"] == [0, 100] for r in records)
    assert summary["scheduler"] == "ddim"
    assert summary["comparisons"]["morse_vs_baseline"]["lsd"]["exact_budgets"] + \
        summary["comparisons"]["morse_vs_baseline"]["lsd"]["bounded_budgets"] == 2
    # the oracle runs Dash at its Dot steps: its seconds are not its cost, so none is recorded
    assert all(r["seconds"] is None for r in records if r["method"] == "oracle")
    # Fidelity (ddim is deterministic): the reference is every-step Dash at 1.5 x the largest
    # budget run (18 steps), so no point is compared with itself.
    assert all(r["psnr"] < PSNR_CAP for r in records)
    assert (run_dir / "speedup_psnr.json").is_file() and (run_dir / "psnr_vs_lsd.png").is_file()

    # Interrupt: keep two finished points and a half-written third, then rerun.
    (run_dir / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])
    evaluate(tiny_dash_dir, run_dir, f"dot_checkpoint={dot_dir}")
    resumed = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    key = lambda r: (r["method"], r["lsd_budget"])
    assert sorted(map(key, resumed)) == sorted(map(key, records))
    first = {key(r): r["fid"] for r in records}
    assert all(first[key(r)] == r["fid"] for r in resumed)
    assert resumed[:2] == records[:2]  # finished points were kept, not recomputed

    # A narrower sweep in the same directory computes nothing and reports only its own budgets.
    narrower, _ = evaluate(tiny_dash_dir, run_dir, f"dot_checkpoint={dot_dir}", "lsd_budgets=[2]")
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == len(resumed)  # nothing new ran
    morse = narrower["comparisons"]["morse_vs_baseline"]["lsd"]
    assert morse["exact_budgets"] + morse["bounded_budgets"] == 1
    write_summary([run_dir], tmp_path / "summary")  # the multirun summary agrees with the run's report
    (row,) = csv.DictReader(io.StringIO((tmp_path / "summary" / "summary.csv").read_text()))
    assert int(row["exact_budgets"]) + int(row["bounded_budgets"]) == 1


def _shard_worker(rank, world, init_file, dash_dir, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    dash = load_dash(dash_dir)
    result = generate(dash, lambda: make_scheduler("ddpm", dash.scheduler_config), DashSchedule.every_step(4),
                      seed=5, num_samples=7, batch_size=3)
    if rank == 0:
        torch.save(result.images, out_file)
    dist.destroy_process_group()


def test_two_processes_generate_the_same_samples_as_one(tiny_dash_dir, tmp_path):
    dash = load_dash(str(tiny_dash_dir))
    single = generate(dash, lambda: make_scheduler("ddpm", dash.scheduler_config), DashSchedule.every_step(4),
                      seed=5, num_samples=7, batch_size=2).images
    out_file = tmp_path / "sharded.pt"
    mp.start_processes(_shard_worker, args=(2, tmp_path / "init", str(tiny_dash_dir), out_file),
                       nprocs=2, join=True, start_method="spawn")
    sharded = torch.load(out_file, weights_only=True)
    assert sharded.shape == single.shape == (7, 1, 8, 8)
    assert torch.allclose(sharded, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("budgets", [[0.5, 3], [3, 2], [2, 2], []])
def test_bad_budget_lists_are_refused(budgets):
    with pytest.raises(ValueError, match=r"lsd_budgets=.* is invalid"):
        check_budgets(budgets)


def test_dot_for_another_scheduler_is_refused_before_sampling(tiny_dash_dir, dot_dir, tmp_path, evaluate):
    with pytest.raises(ValueError, match=r"trained for scheduler 'ddim'.*samples with 'ddpm'"):
        evaluate(tiny_dash_dir, tmp_path / "run", f"dot_checkpoint={dot_dir}", "scheduler=ddpm")
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_dot_for_another_dash_or_m_is_refused(tiny_dash_dir, dot_dir, tmp_path, make_unet, evaluate):
    other = tmp_path / "other_dash"
    make_unet(seed=99).save_pretrained(other, safe_serialization=True)
    with pytest.raises(ValueError, match=r"trained for another Dash"):
        evaluate(other, tmp_path / "run", f"dot_checkpoint={dot_dir}")
    with pytest.raises(ValueError, match=r"has Dot settings .*'num_down': 1"):
        evaluate(tiny_dash_dir, tmp_path / "run2", f"dot_checkpoint={dot_dir}", "dot.num_down=2")


def test_fidelity_with_a_stochastic_sampler_is_refused(tiny_dash_dir, tmp_path, evaluate):
    with pytest.raises(ValueError, match=r"fidelity needs a deterministic sampler, but scheduler=ddpm"):
        evaluate(tiny_dash_dir, tmp_path / "run", "scheduler=ddpm", "fidelity.enabled=true",
                 "methods=[baseline,reuse]")
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_samples_the_extractor_cannot_read_are_refused_before_sampling(tmp_path, make_unet, evaluate):
    rgb = tmp_path / "rgb_dash"
    make_unet(sample_size=16, channels=3).save_pretrained(rgb, safe_serialization=True)
    with pytest.raises(ValueError, match=r"\(C, H, W\)=\(3, 16, 16\) but feature extractor 'digits_classifier'"):
        evaluate(rgb, tmp_path / "run", "methods=[baseline,reuse]")
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_morse_without_a_dot_is_refused(tiny_dash_dir, tmp_path, evaluate):
    with pytest.raises(ValueError, match=r"method 'morse' needs a trained Dot"):
        evaluate(tiny_dash_dir, tmp_path / "run")


@pytest.fixture
def covered_dot_dir(tiny_dash_dir, tmp_path):
    """An untrained Dot whose record says it was trained for gaps <= 2 on 2..8 steps."""
    dot = Dot(load_dash(str(tiny_dash_dir)), num_down=1, width=8, lora_rank=2, norm_groups=4)
    return save_dot(dot, tmp_path / "covered_dot", {"scheduler": "ddim",
                                                     "coverage": {"max_gap": 2, "fine_steps": [2, 8]}})


@pytest.mark.parametrize(("overrides", "message"), [
    (["jump_stride=stride3"], r"trained for gaps up to 2 steps, but the pattern at 2 LSD has a gap of 3 .*module.max_gap=3"),
    (["jump_stride=stride2", "lsd_budgets=[2,6]"], r"trained on 2..8 steps, but Morse at 6 LSD runs n = 9: train it with module.fine_steps=\[2,9\]"),
])
def test_dot_that_does_not_cover_the_pattern_is_refused_and_results_are_kept(
    tiny_dash_dir, covered_dot_dir, tmp_path, evaluate, overrides, message
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    earlier = b'{"method": "baseline", "lsd_budget": 2.0}\n'
    (run_dir / "results.jsonl").write_bytes(earlier)
    with pytest.raises(ValueError, match=message) as error:
        evaluate(tiny_dash_dir, run_dir, f"dot_checkpoint={covered_dot_dir}", *overrides)
    assert "\n" not in str(error.value)
    assert (run_dir / "results.jsonl").read_bytes() == earlier


def test_dot_trained_for_other_scheduler_options_is_refused(tiny_dash_dir, tmp_path, evaluate):
    dot = Dot(load_dash(str(tiny_dash_dir)), num_down=1, width=8, lora_rank=2, norm_groups=4)
    leading = save_dot(dot, tmp_path / "leading_dot", {"scheduler": "ddim",
                                                        "scheduler_options": {"timestep_spacing": "leading"}})
    with pytest.raises(ValueError, match=r"scheduler options \{'timestep_spacing': 'leading'.*'trailing'"):
        evaluate(tiny_dash_dir, tmp_path / "run", f"dot_checkpoint={leading}")
    # a record from before DDIM's step options holds none: read at their default (false), so
    # it is refused for consistent clipping
    trailing = save_dot(dot, tmp_path / "trailing_dot", {"scheduler": "ddim",
                                                          "scheduler_options": {"timestep_spacing": "trailing"}})
    with pytest.raises(ValueError, match=r"'use_clipped_model_output': False\}, this run samples with .*True"):
        evaluate(tiny_dash_dir, tmp_path / "run2", f"dot_checkpoint={trailing}", "scheduler.use_clipped_model_output=true")


def test_oracle_reaches_the_ceiling_formula_of_its_pattern(tmp_path, run_config):
    """Oracle Dot (Dash at the Dot steps, charged 1/N): its samples are every-step Dash's, so
    its read-off speedup is n / lsd(n) = 1 / (1/K + (K-1)/(K N)) (1.6 for K = 2, N = 4)."""
    cfg = run_config("evaluate", [
        "methods=[baseline,oracle]", "jump_stride=stride2", "speed_ratio=4.0", "lsd_budgets=[2.5,5]",
        "metric.num_samples=200",
        "batch_size=200", "grid_budgets=[]", "logger=none", "fidelity.enabled=false", "bootstrap.resamples=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ], tmp_path / "run")
    summary, objects = run(cfg)
    fid = {(r["method"], r["num_steps"]): r["fid"] for r in objects["records"]}
    for n in (4, 8):  # 2.5 LSD = 2 Dash + 2 Dot steps; 5 LSD = 4 + 4
        assert fid[("oracle", n)] == pytest.approx(fid[("baseline", n)], rel=1e-4)
    ceiling = 1 / (1 / 2 + 1 / (2 * 4.0))
    speedups = [row["speedups"]["oracle_vs_baseline"]["lsd"] for row in summary["table"]
                if "oracle_vs_baseline" in row["speedups"]]
    assert [cell["bound"] for cell in speedups] == [None, None]
    assert [cell["speedup"] for cell in speedups] == pytest.approx([ceiling, ceiling], rel=1e-3)


def test_two_runs_on_one_machine_use_the_same_stored_n(tiny_dash_dir, dot_dir, tmp_path, run_config, monkeypatch):
    """N is measured once per machine and models, then read back: a second run (e.g. under
    another load) gets the same N, the same schedules and the same FIDs."""
    from morse_exp import speed

    measured = iter([3.0, 9.0])  # the second measurement would differ, as under load
    monkeypatch.setattr(speed, "measure_speed_ratio", lambda *a, **k: speed.SpeedMeasurement(
        100, next(measured), 1.0))

    def sweep(run_dir, *extra):
        cfg = run_config("evaluate", [f"model.pretrained={tiny_dash_dir}", *TINY, "speed_ratio=null",
                                      f"dot_checkpoint={dot_dir}", "baseline_reach=1", "bootstrap.resamples=0",
                                      f"metric.extractors_dir={tmp_path}/extractors",
                                      f"paths.cache_dir={tmp_path}/cache", *extra], run_dir)
        return run(cfg)[1]["records"]

    first, second = sweep(tmp_path / "a"), sweep(tmp_path / "b")
    assert {r["speed_ratio"] for r in first + second if r["method"] != "baseline"} == {3.0}
    # the baseline's points are not decided by N, the pattern or the Dot: its records do not claim them
    assert {(r["speed_ratio"], r["jump_stride"], r["dot_checkpoint"]) for r in first if r["method"] == "baseline"} == {
        (None, None, None)}
    assert [(r["method"], r["num_steps"], r["fid"]) for r in first] == [(r["method"], r["num_steps"], r["fid"]) for r in second]
    remeasured = sweep(tmp_path / "c", "remeasure_speed=true")
    assert {r["speed_ratio"] for r in remeasured if r["method"] != "baseline"} == {9.0}


def test_deepcache_runs_as_a_method_with_its_own_n_and_interval_one_is_the_baseline(
    tiny_dash_dir, tmp_path, evaluate
):
    """DeepCache's points are costed with its own N (deepcache_speed_ratio) and pattern (a full
    step every `interval`); with interval 1 every step is a full Dash step: the baseline's FID."""
    overrides = ["methods=[baseline,deepcache]", "deepcache_speed_ratio=2.0", "baseline_reach=1",
                 "bootstrap.resamples=0", "lsd_budgets=[2,4]"]
    summary, objects = evaluate(tiny_dash_dir, tmp_path / "k3", *overrides, "deepcache.interval=3")
    cached = {r["lsd_budget"]: r for r in objects["records"] if r["method"] == "deepcache"}
    for budget, record in cached.items():
        schedule = DashSchedule.from_stride(record["num_steps"], 3)
        assert record["dash_calls"] == schedule.dash_calls
        assert record["speed_ratio"] == 2.0 and record["lsd"] == pytest.approx(schedule.lsd(2.0))
        assert record["lsd"] <= budget and record["method_settings"] == {"method": "deepcache", "depth": 1,
                                                                         "interval": 3}
    assert "deepcache_vs_baseline" in summary["comparisons"]
    _, objects = evaluate(tiny_dash_dir, tmp_path / "k1", *overrides, "deepcache.interval=1")
    fid = {(r["method"], r["lsd_budget"]): r["fid"] for r in objects["records"]}
    assert fid[("deepcache", 2.0)] == fid[("baseline", 2.0)] and fid[("deepcache", 4.0)] == fid[("baseline", 4.0)]


def test_morse_stacked_with_deepcache_runs_with_the_combined_n_and_interval_one_is_morse(
    tiny_dash_dir, dot_dir, tmp_path, evaluate
):
    """morse_deepcache's N combines Morse's (4.0) with its DeepCache's, measured and recorded in
    the run directory; its full Dash steps come every stride x interval steps; with interval 1
    it is Morse, point for point."""
    overrides = [f"dot_checkpoint={dot_dir}", "methods=[baseline,morse,morse_deepcache]", "baseline_reach=1",
                 "bootstrap.resamples=0", "jump_stride=stride2", "lsd_budgets=[2,3]"]
    run_dir = tmp_path / "i2"
    _, objects = evaluate(tiny_dash_dir, run_dir, *overrides, "morse_deepcache.interval=2")
    cache_ratio = json.loads((run_dir / "speed_ratio_morse_deepcache_deepcache.json").read_text())["speed_ratio"]
    expected = 3 / (1 / cache_ratio + 2 / 4.0)  # period 4: 1 full, 1 cached, 2 Dot steps
    stacked = [r for r in objects["records"] if r["method"] == "morse_deepcache"]
    assert len(stacked) == 2 and all(r["speed_ratio"] == pytest.approx(expected) for r in stacked)
    for record in stacked:
        assert record["dash_calls"] == DashSchedule.from_stride(record["num_steps"], 4).dash_calls
        assert record["method_settings"]["interval"] == 2 and record["lsd"] <= record["lsd_budget"]
    _, objects = evaluate(tiny_dash_dir, tmp_path / "i1", *overrides, "morse_deepcache.interval=1")
    fid = {(r["method"], r["lsd_budget"]): (r["fid"], r["num_steps"]) for r in objects["records"]}
    assert all(fid[("morse_deepcache", b)] == fid[("morse", b)] for b in (2.0, 3.0))


def test_morse_stacked_with_deepcache_needs_a_fixed_stride(tiny_dash_dir, dot_dir, tmp_path, evaluate):
    with pytest.raises(ValueError, match=r"^method morse_deepcache stacks DeepCache on a fixed stride") as error:
        evaluate(tiny_dash_dir, tmp_path / "run", f"dot_checkpoint={dot_dir}", "methods=[baseline,morse_deepcache]",
                 "jump_stride=dot_share")
    assert "\n" not in str(error.value)


def test_a_deepcache_setting_change_reruns_only_deepcache_points(tiny_dash_dir, tmp_path, evaluate):
    overrides = ["methods=[baseline,deepcache]", "deepcache_speed_ratio=2.0", "baseline_reach=1",
                 "bootstrap.resamples=0", "lsd_budgets=[3]"]
    run_dir = tmp_path / "run"
    evaluate(tiny_dash_dir, run_dir, *overrides, "deepcache.depth=1")
    evaluate(tiny_dash_dir, run_dir, *overrides, "deepcache.depth=2")
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r.get("method_settings", {}).get("depth")) for r in records] == [
        ("baseline", None), ("deepcache", 1), ("deepcache", 2)]


def test_sample_grids_default_to_the_runs_own_budgets(tiny_dash_dir, tmp_path, evaluate):
    run_dir = tmp_path / "run"
    evaluate(tiny_dash_dir, run_dir, "methods=[baseline,reuse]", "grid_budgets=null", "baseline_reach=2",
             "bootstrap.resamples=0", "fidelity.enabled=false")
    # every method at lsd_budgets [2, 3]; none for the baseline's extra points (4, 5, 6)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "baseline_lsd2.png", "baseline_lsd3.png", "reuse_lsd2.png", "reuse_lsd3.png"]


def test_a_pattern_or_dot_change_keeps_the_baseline_points(tiny_dash_dir, dot_dir, tmp_path, evaluate):
    """The baseline does not depend on the jump pattern, the Dot or N: a rerun that changes them
    reruns reuse (pattern) and Morse (Dot's weights, even in the same directory), never the
    baseline, whose points are shared."""
    overrides = ["methods=[baseline,reuse,morse]", "baseline_reach=1", "bootstrap.resamples=0", "lsd_budgets=[3]",
                 "fidelity.enabled=false"]
    run_dir = tmp_path / "run"
    evaluate(tiny_dash_dir, run_dir, *overrides, f"dot_checkpoint={dot_dir}", "jump_stride=stride2")
    evaluate(tiny_dash_dir, run_dir, *overrides, f"dot_checkpoint={dot_dir}", "jump_stride=stride3", "speed_ratio=5.0")
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["baseline", "reuse", "morse", "reuse", "morse"]
    assert records[1]["num_steps"] != records[3]["num_steps"]
    # a Dot retrained into the same directory: its weights, not its path, decide Morse's points
    dot = Dot(load_dash(str(tiny_dash_dir)), num_down=1, width=8, lora_rank=2, norm_groups=4)
    torch.nn.init.normal_(dot.head.out.weight, std=0.2)
    save_dot(dot, dot_dir, {"scheduler": "ddim"})
    evaluate(tiny_dash_dir, run_dir, *overrides, f"dot_checkpoint={dot_dir}", "jump_stride=stride3", "speed_ratio=5.0")
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["baseline", "reuse", "morse", "reuse", "morse", "morse"]
    assert records[5]["fid"] != records[4]["fid"]


def test_reuse_follows_the_dot_base_and_only_the_x0_base_gets_new_points(tiny_dash_dir, tmp_path, evaluate):
    """Reuse is an untrained Dot: on dot.base=x0 it carries Dash's last data estimate, not its
    noise estimate, so its points are its own (DDPM: another FID); the baseline's are shared."""
    overrides = ["methods=[baseline,reuse]", "scheduler=ddpm", "baseline_reach=1", "bootstrap.resamples=0",
                 "lsd_budgets=[3]"]
    run_dir = tmp_path / "run"
    for base in ("eps", "x0", "eps"):
        evaluate(tiny_dash_dir, run_dir, *overrides, f"dot.base={base}")
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["baseline", "reuse", "reuse"]
    assert records[1]["config_hash"] != records[2]["config_hash"] and records[1]["fid"] != records[2]["fid"]


def test_the_sweeps_progress_counts_the_fidelity_reference_step_by_step(tiny_dash_dir, tmp_path, evaluate, capsys):
    """The log of a long run says what it does inside a batch too: the every-step reference
    (5 steps x 100 samples, one batch) is part of the sweep's total, as is each point (3 LSD x
    100); each sampling step advances its batch by 1 / steps (100 of 800: a line each)."""
    evaluate(tiny_dash_dir, tmp_path / "run", "methods=[baseline]", "baseline_reach=1", "bootstrap.resamples=0",
             "lsd_budgets=[3]", "batch_size=100")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluate sweep")]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == [f"{k}00/800" for k in range(1, 9)]
    assert lines[0].endswith("fidelity reference (5 steps): 20/100 samples")
    assert lines[-1].endswith("baseline @ 3 LSD: 100/100 samples")


def test_the_dash_decides_points_by_its_weights_not_its_path(tiny_dash_dir, tmp_path, evaluate):
    """A copy of the Dash elsewhere (another checkout) shares the baseline points; another
    Dash saved into the same directory (retrained in place) gets its own."""
    overrides = ["methods=[baseline]", "baseline_reach=1", "bootstrap.resamples=0", "lsd_budgets=[3]",
                 "fidelity.enabled=false"]
    run_dir, copy = tmp_path / "run", tmp_path / "copy"
    evaluate(tiny_dash_dir, run_dir, *overrides)
    shutil.copytree(tiny_dash_dir, copy)
    evaluate(copy, run_dir, *overrides)
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 1
    save_tiny_dash(copy, seed=12)
    evaluate(copy, run_dir, *overrides)
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[0]["config_hash"] != records[1]["config_hash"]
    assert records[0]["fid"] != records[1]["fid"]


def test_psnr_curves_keep_only_points_measured_against_the_runs_own_reference(tiny_dash_dir, tmp_path, evaluate):
    """PSNR's reference (every-step Dash at 1.5 x the largest planned budget) depends on the
    budgets: a point copied from a run with other budgets keeps its FID but stays out of this
    run's PSNR curves; each point records its reference's steps."""
    overrides = ["methods=[baseline]", "baseline_reach=1", "bootstrap.resamples=0",
                 f"metric.extractors_dir={tmp_path}/extractors"]
    first, second = tmp_path / "first", tmp_path / "second"
    evaluate(tiny_dash_dir, first, *overrides, "lsd_budgets=[3]")
    evaluate(tiny_dash_dir, second, *overrides, "lsd_budgets=[3,4]", f"copy_points_from=[{first}]")
    records = [json.loads(line) for line in (second / "results.jsonl").read_text().splitlines()]
    assert [(r["lsd_budget"], r["psnr_reference_steps"], "copied_from" in r) for r in records] == [
        (3.0, 5, True), (4.0, 6, False)]
    fid_budgets = [row["budget"] for row in json.loads((second / "speedup.json").read_text())["table"]]
    psnr_budgets = [row["budget"] for row in json.loads((second / "speedup_psnr.json").read_text())["table"]]
    assert (fid_budgets, psnr_budgets) == ([3.0, 4.0], [4.0])


def test_a_run_that_writes_no_psnr_report_removes_an_earlier_one(tiny_dash_dir, tmp_path, evaluate):
    """A rerun in the same directory without a PSNR report (fidelity off) leaves none of the
    earlier run's PSNR files behind, which would read as this run's."""
    overrides = ["methods=[baseline]", "baseline_reach=1", "bootstrap.resamples=0", "lsd_budgets=[3]",
                 f"metric.extractors_dir={tmp_path}/extractors"]
    run_dir = tmp_path / "run"
    evaluate(tiny_dash_dir, run_dir, *overrides)
    psnr_files = ["speedup_psnr.json", "speedup_psnr.md", "psnr_vs_lsd.png"]
    assert all((run_dir / name).is_file() for name in psnr_files)
    evaluate(tiny_dash_dir, run_dir, *overrides, "fidelity.enabled=false")
    assert [name for name in psnr_files if (run_dir / name).exists()] == []
    assert (run_dir / "speedup.json").is_file()

def test_copy_points_from_takes_another_runs_unchanged_points_and_samples_only_the_new_dots(
    tiny_dash_dir, dot_dir, tmp_path, evaluate, capsys
):
    """A new Dot's run copies the baseline and reuse points of an earlier run (same settings
    hash), samples Morse only and says why it did not copy Morse's point; a missing source is
    refused in one line before any work."""
    overrides = ["methods=[baseline,reuse,morse]", "baseline_reach=1", "bootstrap.resamples=0", "lsd_budgets=[3]",
                 "fidelity.enabled=false", f"metric.extractors_dir={tmp_path}/extractors"]  # one extractor for both
    first = tmp_path / "first"
    evaluate(tiny_dash_dir, first, *overrides, f"dot_checkpoint={dot_dir}")
    dash = load_dash(str(tiny_dash_dir))
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    torch.nn.init.normal_(dot.head.out.weight, std=0.2)
    other_dot = save_dot(dot, tmp_path / "other_dot", {"scheduler": "ddim"})
    second = tmp_path / "second"
    capsys.readouterr()
    evaluate(tiny_dash_dir, second, *overrides, f"dot_checkpoint={other_dot}", f"copy_points_from=[{first}]")
    said = capsys.readouterr().out
    assert "copied 2 finished points" in said and "copy_points_from: morse @3 found with other settings" in said
    earlier = {r["method"]: r for r in map(json.loads, (first / "results.jsonl").read_text().splitlines())}
    records = [json.loads(line) for line in (second / "results.jsonl").read_text().splitlines()]
    source = str(first / "results.jsonl")
    assert [(r["method"], r.get("copied_from")) for r in records] == [
        ("baseline", source), ("reuse", source), ("morse", None)]
    assert all(r["fid"] == earlier[r["method"]]["fid"] for r in records[:2])
    assert records[2]["fid"] != earlier["morse"]["fid"]
    # a copy of a copy names the run that timed the point; seconds are compared within one run only
    third = tmp_path / "third"
    evaluate(tiny_dash_dir, third, *overrides, f"dot_checkpoint={other_dot}", f"copy_points_from=[{second}]")
    records = [json.loads(line) for line in (third / "results.jsonl").read_text().splitlines()]
    assert [r.get("copied_from") for r in records] == [source, source, str(second / "results.jsonl")]
    assert json.loads((third / "speedup.json").read_text())["seconds_across_runs"] == ["morse_vs_baseline", "morse_vs_reuse"]
    with pytest.raises(ValueError, match=r"^copy_points_from: .*nowhere is neither a results.jsonl file") as error:
        evaluate(tiny_dash_dir, tmp_path / "fourth", *overrides, f"dot_checkpoint={dot_dir}",
                 f"copy_points_from=[{tmp_path}/nowhere]")
    assert "\n" not in str(error.value) and not (tmp_path / "fourth" / "results.jsonl").exists()
