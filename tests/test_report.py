"""Tests of the lossless-speedup report on synthetic curves with known answers."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from morse_exp.report import (
    lossless_speedup,
    read_results,
    summarize,
    write_report,
)
from morse_exp.summary import _error_bar, figure_title, main, run_labels, summary_figure

BUDGETS = [float(n) for n in range(1, 41)]  # 1..40 LSD; 2 * b is on the grid for b <= 20


def make_records(method: str, fid_scale: float, budgets=BUDGETS, **extra) -> list[dict]:
    """Records of one method with fid = fid_scale / lsd and seconds = 0.1 * lsd."""
    return [
        {
            "method": method,
            "lsd_budget": budget,
            "lsd": budget,
            "fid": fid_scale / budget,
            "kid": None,
            "seconds": 0.1 * budget,
            "num_samples": 2000,
            "extractor": "digits_classifier",
            "scheduler": "ddim",
            "model": "unet_digits",
            "dataset": "digits",
            "speed_ratio": 5.0,
            **extra,
        }
        for budget in budgets
    ]


def three_curves() -> list[dict]:
    """baseline fid 100/lsd, reuse 70/lsd, morse 50/lsd: morse is exactly 2x the baseline."""
    return [
        *make_records("baseline", 100.0),
        *make_records("reuse", 70.0),
        *make_records("morse", 50.0),
    ]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_speedup_is_two_at_interior_budgets_and_bounded_at_the_ends():
    entries = lossless_speedup(make_records("baseline", 100.0), make_records("morse", 50.0))
    assert [entry["budget"] for entry in entries] == BUDGETS
    for entry in entries:
        if entry["budget"] <= 20:  # baseline reaches fid 50/b at 2b <= 40 LSD
            assert entry["bound"] is None
            assert entry["speedup"] == pytest.approx(2.0, abs=1e-6)
            assert entry["reference_cost"] == pytest.approx(2 * entry["budget"], abs=1e-6)
        else:  # morse beats the baseline's best (fid 2.5 at 40 LSD): only a lower bound
            assert entry["bound"] == ">="
            assert entry["speedup"] == pytest.approx(40.0 / entry["budget"])


def test_worse_than_every_reference_point_is_an_upper_bound():
    # reuse at fid 200/lsd: the baseline needs lsd/2, below its cheapest point for lsd = 1
    entries = lossless_speedup(make_records("baseline", 100.0), make_records("reuse", 200.0))
    assert entries[0]["bound"] == "<="
    assert entries[0]["speedup"] == pytest.approx(1.0)  # min reference cost 1 / cost 1
    assert all(entry["bound"] is None for entry in entries[1:])
    assert entries[1]["speedup"] == pytest.approx(0.5, abs=1e-6)


def test_higher_is_better_metric():
    baseline = [{"lsd": float(c), "psnr": float(c), "lsd_budget": float(c)} for c in range(1, 21)]
    method = [{"lsd": float(c), "psnr": 2.0 * c, "lsd_budget": float(c)} for c in range(1, 21)]
    entries = lossless_speedup(baseline, method, metric="psnr", lower_is_better=False)
    for entry in entries:
        if entry["cost"] <= 10:
            assert entry["bound"] is None
            assert entry["speedup"] == pytest.approx(2.0, abs=1e-6)
        else:
            assert entry["bound"] == ">="


def test_interpolation_is_linear_in_the_metric_and_log_cost():
    baseline = [{"lsd": 2.0, "fid": 40.0}, {"lsd": 8.0, "fid": 20.0}]
    method = [{"lsd": 2.0, "fid": 30.0, "lsd_budget": 2.0}]  # halfway in fid -> sqrt(2 * 8) = 4
    (entry,) = lossless_speedup(baseline, method)
    assert entry["reference_cost"] == pytest.approx(4.0)
    assert entry["speedup"] == pytest.approx(2.0)


def test_noisy_non_monotone_baseline_gives_finite_monotone_answers():
    noise = [3.0, -4.0, 5.0, -2.0, 6.0, -5.0, 4.0, -3.0, 2.0, -1.0]
    baseline = [
        {"lsd": float(c), "fid": 100.0 / c + noise[i % len(noise)]}
        for i, c in enumerate(range(1, 31))
    ]
    method = [{"lsd": float(c), "fid": 50.0 / c, "lsd_budget": float(c)} for c in range(2, 16)]
    entries = lossless_speedup(baseline, method)
    assert len(entries) == len(method)
    assert all(math.isfinite(entry["speedup"]) and entry["speedup"] > 0 for entry in entries)
    # better quality never needs less reference cost (the reference was made monotone)
    needed = [entry["reference_cost"] for entry in entries]
    assert needed == sorted(needed)


def test_points_without_a_metric_are_skipped():
    baseline = make_records("baseline", 100.0)
    morse = make_records("morse", 50.0)
    morse[3]["fid"] = None
    entries = lossless_speedup(baseline, morse)
    assert len(entries) == len(BUDGETS) - 1
    with pytest.raises(ValueError, match="no point"):
        lossless_speedup(make_records("baseline", 100.0, kid=None), morse, metric="kid")


def test_summarize_averages_exact_budgets_only():
    summary = summarize(three_curves())
    stats = summary["comparisons"]["morse_vs_baseline"]
    for cost_key in ("lsd", "seconds"):  # seconds are proportional to LSD here
        assert stats[cost_key]["average"] == pytest.approx(2.0, abs=1e-6)
        assert stats[cost_key]["min"] == pytest.approx(2.0, abs=1e-6)
        assert stats[cost_key]["max"] == pytest.approx(2.0, abs=1e-6)
        assert stats[cost_key]["exact_budgets"] == 20
        assert stats[cost_key]["bounded_budgets"] == 20
    assert summary["comparisons"]["morse_vs_reuse"]["lsd"]["average"] == pytest.approx(
        1.4, rel=0.02
    )
    assert list(summary["comparisons"]) == [
        "morse_vs_baseline",
        "reuse_vs_baseline",
        "morse_vs_reuse",
    ]
    assert summary["methods"] == ["baseline", "reuse", "morse"]
    assert summary["extractor"] == "digits_classifier"
    assert summary["num_samples"] == 2000
    assert (summary["model"], summary["dataset"], summary["scheduler"]) == (
        "unet_digits",
        "digits",
        "ddim",
    )
    first = summary["table"][0]
    assert first["budget"] == 1.0
    assert first["methods"]["morse"] == {"fid": 50.0, "lsd": 1.0, "seconds": 0.1}
    assert first["speedups"]["morse_vs_baseline"]["lsd"]["speedup"] == pytest.approx(2.0)


def test_summarize_without_reuse_reports_only_morse_vs_baseline():
    records = make_records("baseline", 100.0) + make_records("morse", 50.0)
    assert list(summarize(records)["comparisons"]) == ["morse_vs_baseline"]


def test_no_speedup_in_seconds_between_points_timed_in_different_runs():
    """The baseline copied from another run (copy_points_from): its seconds were measured under
    that run's load, so Morse against it gets an LSD speedup only; reuse, copied from the same
    run as the baseline, keeps both."""
    from morse_exp.report import render_markdown

    records = (make_records("baseline", 100.0, copied_from="runs/a/results.jsonl")
               + make_records("reuse", 70.0, copied_from="runs/a/results.jsonl") + make_records("morse", 50.0))
    summary = summarize(records)
    assert list(summary["comparisons"]["morse_vs_baseline"]) == ["lsd"]
    assert list(summary["comparisons"]["reuse_vs_baseline"]) == ["lsd", "seconds"]
    assert summary["seconds_across_runs"] == ["morse_vs_baseline", "morse_vs_reuse"]
    markdown = render_markdown(summary)
    assert "No speedup in seconds for morse vs baseline, morse vs reuse: their points were timed in different runs" in markdown
    assert "## Images per second" not in markdown
    assert summarize(three_curves())["seconds_across_runs"] == []


@pytest.mark.parametrize(("key", "value"), [("extractor", "inception_v3"), ("num_samples", 500)])
def test_summarize_refuses_to_mix_extractors_or_sample_counts(key, value):
    records = make_records("baseline", 100.0) + make_records("morse", 50.0, **{key: value})
    with pytest.raises(ValueError, match=key):
        summarize(records)


def test_summarize_refuses_records_without_required_keys():
    records = make_records("baseline", 100.0)
    del records[2]["extractor"]
    with pytest.raises(ValueError, match="extractor"):
        summarize(records)


def test_write_report_writes_three_files_and_json_round_trips(tmp_path):
    records = three_curves()
    paths = write_report(records, tmp_path / "run")
    assert [path.name for path in paths] == ["speedup.json", "speedup.md", "fid_vs_lsd.png"]
    assert json.loads(paths.json.read_text()) == json.loads(json.dumps(summarize(records)))
    markdown = paths.markdown.read_text()
    assert "morse vs baseline" in markdown and "≥" in markdown and "2.00x" in markdown
    assert paths.plot.read_bytes().startswith(b"\x89PNG")
    written = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert written == ["fid_vs_lsd.png", "speedup.json", "speedup.md"]  # no temporary files left


def test_read_results_skips_blank_lines_and_a_truncated_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    records = make_records("baseline", 100.0, budgets=[1.0, 2.0])
    path.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + '\n{"method": "mo')
    with pytest.warns(UserWarning, match="truncated"):
        assert read_results(path) == records


def test_read_results_raises_on_a_corrupted_middle_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match=":2:"):
        read_results(path)


def test_cli_summarizes_a_multirun_directory(tmp_path):
    for index, scheduler in enumerate(["ddim", "ddpm"]):
        run = tmp_path / str(index)
        records = [
            {**record, "scheduler": scheduler}
            for record in make_records("baseline", 100.0) + make_records("morse", 50.0)
        ]
        write_jsonl(run / "results.jsonl", records)
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(f"- scheduler={scheduler}\n- seed=0\n")
    assert main([str(tmp_path)]) == 0
    summary_md = (tmp_path / "summary.md").read_text()
    assert "scheduler=ddim seed=0" in summary_md and "scheduler=ddpm seed=0" in summary_md
    with (tmp_path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["0", "1"]
    assert float(rows[0]["lsd_average"]) == pytest.approx(2.0, abs=1e-6)
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_summary_figure_bars_span_the_bootstrap_interval_else_min_max():
    row = {"lsd_average": 1.5, "lsd_low": 1.4, "lsd_high": 1.7, "lsd_min": 1.2, "lsd_max": 1.8}
    assert _error_bar(row) == pytest.approx((0.1, 0.2))
    assert _error_bar({**row, "lsd_low": None, "lsd_high": None}) == pytest.approx((0.3, 0.3))
    assert _error_bar({**row, "lsd_average": None}) == (0.0, 0.0)


def test_summary_rows_name_the_rival_a_run_measured(tmp_path):
    """A run of the baseline and one rival is that rival's row (a settings sweep of deepcache
    reads like one of Morse); a run with Morse is Morse's row whatever else it ran."""
    for name, methods in {"deepcache": ["deepcache"], "stitch": ["stitch"], "both": ["deepcache", "morse"]}.items():
        write_jsonl(tmp_path / name / "results.jsonl", make_records("baseline", 100.0) + [
            record for index, method in enumerate(methods) for record in make_records(method, 50.0 / (index + 1))])
    assert main([str(tmp_path)]) == 0
    with (tmp_path / "summary.csv").open() as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert {run: row["method"] for run, row in rows.items()} == {"both": "morse", "deepcache": "deepcache", "stitch": "stitch"}
    assert float(rows["deepcache"]["lsd_average"]) == pytest.approx(2.0, abs=1e-6)
    assert float(rows["both"]["lsd_average"]) == pytest.approx(4.0, abs=1e-6)


def test_cli_writes_to_out_and_accepts_a_single_run(tmp_path):
    write_jsonl(tmp_path / "run" / "results.jsonl", three_curves())
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert "(none)" in (tmp_path / "out" / "summary.md").read_text()


def test_cli_on_an_empty_directory_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "morse_exp.report", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no results.jsonl" in result.stderr


def test_cli_reports_a_mixed_run_in_one_line(tmp_path, capsys):
    records = make_records("baseline", 100.0) + make_records("morse", 50.0, extractor="other")
    write_jsonl(tmp_path / "results.jsonl", records)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "extractor" in err


def test_markdown_reports_images_per_second_at_equal_fid():
    """Morse at b LSD takes 0.1 b s for 2,000 images; the baseline needs 2b LSD = 0.2 b s for
    that FID: 20,000 / b images/s against 10,000 / b; past the baseline's range, a bound."""
    from morse_exp.report import render_markdown

    section = render_markdown(summarize(three_curves())).split("## Images per second at equal fid")[1]
    assert "| 10 | 5 | 2000.0 | 1000.0 |" in section
    assert "| 40 | 1.25 | 500.0 | ≤500.0 |" in section  # 80 LSD lies past the baseline's 40


def test_bootstrap_interval_of_the_average_speedup_has_the_known_answer():
    """FID = 10 - 2 ln(cost): a Morse point at cost c with FID 10 - 2 ln(2c) + d is worth
    2 exp(-d/2) x. Resample b shifts every Morse FID by the same d_b ~ N(0, 0.2) and leaves
    the baseline alone, so the interval of the average is 2 exp(-q/2) at the quantiles q of d."""
    import numpy as np

    draws = np.random.default_rng(0).normal(0.0, 0.2, 400)
    def point(method, cost, fid, shifts):
        return {**make_records(method, 1.0, [cost])[0], "fid": fid, "fid_bootstrap": [fid + d for d in shifts]}

    baseline = [point("baseline", c, 10 - 2 * math.log(c), np.zeros(400)) for c in map(float, range(1, 65))]
    morse = [point("morse", c, 10 - 2 * math.log(2 * c), draws) for c in (2.0, 4.0, 8.0, 16.0)]
    stats = summarize([*baseline, *morse])["comparisons"]["morse_vs_baseline"]["lsd"]
    assert stats["average"] == pytest.approx(2.0, rel=1e-6) and stats["bounded_budgets"] == 0
    low, high = 2 * np.exp(-np.percentile(draws, [97.5, 2.5]) / 2)
    assert stats["interval"] == pytest.approx([low, high], rel=1e-3)
    assert stats["resamples"] == 400
    assert stats["interval"][0] < 2.0 < stats["interval"][1]


def test_no_interval_without_bootstrap_resamples():
    stats = summarize(three_curves())["comparisons"]["morse_vs_baseline"]["lsd"]
    assert stats["interval"] is None and stats["resamples"] == 0


def test_plot_labels_its_axes_and_ticks_every_method_budget():
    from morse_exp.report import render_plot

    records = [*make_records("baseline", 100.0, [float(b) for b in range(2, 41)]),
               *make_records("morse", 50.0, [3.0, 4.0, 6.0, 10.0])]
    drawn: list[dict] = []
    png = render_plot(summarize(records), drawn)
    assert png.startswith(b"\x89PNG")
    lsd, seconds = drawn
    assert lsd["xticks"] == [3.0, 4.0, 6.0, 10.0, 40.0]  # the method's budgets and the baseline's reach
    assert lsd["xlabel"] == "cost (LSD, log scale)" and lsd["ylabel"].startswith("FID")
    assert seconds["xlabel"] == "cost (seconds, log scale)"
    for panel in drawn:  # every curve joined in order of its cost
        for points in panel["curves"].values():
            assert [x for x, _ in points] == sorted(x for x, _ in points)


def test_summary_figure_title_names_each_method_once():
    rows = [{"method": m} for m in ("morse_deepcache", "morse", "stitch", "morse")]
    assert figure_title(rows) == "Morse / Morse + deepcache / stitch vs baseline, per run"


def summary_row(run: str, overrides: str, scheduler: str, average: float, oracle: float | None) -> dict:
    return {"run": run, "overrides": overrides, "scheduler": scheduler, "method": "morse", "lsd_average": average,
            "lsd_low": average - 0.1, "lsd_high": average + 0.1, "lsd_min": average, "lsd_max": average,
            "oracle_lsd_average": oracle}


def test_summary_figure_marks_each_runs_oracle_ceiling_and_only_where_it_ran():
    rows = [summary_row("a", "seed=1", "ddim", 1.6, 2.3), summary_row("b", "seed=1", "ddpm", 1.1, None),
            summary_row("c", "seed=1", "sde", 2.2, 2.4)]
    axes = summary_figure(rows).axes[0]
    (ceilings,) = axes.collections[-1:]  # the scatter drawn after the bars' error bars
    assert ceilings.get_offsets().tolist() == [[0.0, 2.3], [2.0, 2.4]]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["oracle Dot (ceiling)"]
    assert summary_figure([summary_row("a", "seed=1", "ddim", 1.6, None)]).axes[0].get_legend() is None


def test_run_labels_lead_with_the_sampler_only_where_the_runs_samplers_differ():
    ddim = summary_row("main", "experiment=emoji32_main seed=1", "ddim", 1.6, 2.3)
    ddpm = summary_row("ddpm", "scheduler=ddpm lsd_budgets=[6,12] seed=1", "ddpm", 1.1, 2.2)
    assert run_labels([ddim, ddpm]) == ["ddim\nexperiment=emoji32_main", "ddpm\nlsd_budgets=[6,12]"]
    other_seed = {**ddim, "run": "main2", "overrides": "experiment=emoji32_main seed=2"}
    assert run_labels([ddim, other_seed]) == ["seed=1", "seed=2"]
