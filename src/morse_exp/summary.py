"""One table and one figure from many evaluate runs: ``python -m morse_exp.report DIR``.

Gathers every ``results.jsonl`` under the DIRs (one evaluate run, or a Hydra multirun with one
run per subdirectory), reads each run's lossless speedup (:mod:`morse_exp.report`) and writes
``summary.md``, ``summary.csv`` and ``summary.png``: one row per run, with its overrides.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from morse_exp.atomic import write_atomic
from morse_exp.report import (
    CONTEXT_KEYS,
    figure_bytes,
    format_number,
    markdown_table,
    model_label,
    read_results,
    summarize,
)

HEADLINE_METHODS: tuple[str, ...] = ("morse", "morse_deepcache", "deepcache", "stitch", "reuse")
"""A run's row reports the first of these that it ran against the baseline: Morse where it ran,
else a rival (a run of baseline and deepcache is deepcache's row), else reuse."""
METHOD_NAMES: dict[str, str] = {"morse": "Morse", "morse_deepcache": "Morse + deepcache"}
"""How the summary figure's title names a method (others by their config name)."""


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort key that orders run directories 0, 1, 2, ..., 10 rather than 0, 1, 10, 2."""
    return [
        (0, int(part)) if part.isdigit() else (1, part)
        for piece in path.parts
        for part in re.split(r"(\d+)", piece)
        if part
    ]


def find_runs(directory: str | os.PathLike[str]) -> list[Path]:
    """Run directories (those holding ``results.jsonl``) at or under ``directory``, in order."""
    root = Path(directory)
    return sorted(
        (results.parent for results in root.rglob("results.jsonl")),
        key=lambda run: _natural_key(run.relative_to(root)),
    )


def read_overrides(run_dir: str | os.PathLike[str]) -> list[str]:
    """Hydra overrides of a run (``.hydra/overrides.yaml``), or [] when the run has none."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(overrides, list):
        raise ValueError(f"{path}: expected a list of overrides, got {type(overrides).__name__}")
    return [str(override) for override in overrides]


SUMMARY_COLUMNS: tuple[str, ...] = (
    "run", "overrides", "model", "dataset", "scheduler", "extractor", "num_samples", "method",
    "lsd_average", "lsd_low", "lsd_high", "lsd_min", "lsd_max", "seconds_average", "seconds_min", "seconds_max",
    "morse_vs_reuse_lsd_average", "oracle_lsd_average", "exact_budgets", "bounded_budgets",
)  # fmt: skip
"""Columns of ``summary.csv``: the speedups are ``method`` (:data:`HEADLINE_METHODS`: Morse, else
a rival, else reuse) vs baseline unless named otherwise; ``lsd_low``/``lsd_high`` bound the 95 % bootstrap
interval of the LSD average; ``oracle_lsd_average`` is the pattern's ceiling."""


def _summary_row(run_dir: Path, relative_to: Path) -> dict[str, Any]:
    """One ``summary.csv`` row for the run in ``run_dir`` (its path shown relative to another):
    its ``speedup.json`` as evaluate last reported it (that sweep's configuration and budgets
    only), else a summary of every record in its ``results.jsonl``."""
    reported = run_dir / "speedup.json"
    try:
        summary = json.loads(reported.read_text()) if reported.is_file() else summarize(
            read_results(run_dir / "results.jsonl"))
    except ValueError as error:
        raise ValueError(f"{run_dir}: {error}") from error
    empty = {"average": None, "min": None, "max": None, "exact_budgets": 0, "bounded_budgets": 0, "interval": None}
    method = next((name for name in HEADLINE_METHODS if f"{name}_vs_baseline" in summary["comparisons"]), "reuse")
    versus_baseline = summary["comparisons"].get(f"{method}_vs_baseline", {})
    versus_reuse = summary["comparisons"].get("morse_vs_reuse", {})
    by_lsd = versus_baseline.get("lsd", empty)
    by_seconds = versus_baseline.get("seconds", empty)
    interval = by_lsd.get("interval") or [None, None]
    return {
        "run": os.path.relpath(run_dir, relative_to),
        "overrides": " ".join(read_overrides(run_dir)),
        **{key: summary[key] for key in CONTEXT_KEYS},
        "model": model_label(summary["model"]),
        "method": method,
        **{f"lsd_{stat}": by_lsd[stat] for stat in ("average", "min", "max")},
        "lsd_low": interval[0], "lsd_high": interval[1],
        **{f"seconds_{stat}": by_seconds[stat] for stat in ("average", "min", "max")},
        "morse_vs_reuse_lsd_average": versus_reuse.get("lsd", empty)["average"],
        "oracle_lsd_average": summary["comparisons"].get("oracle_vs_baseline", {}).get("lsd", empty)["average"],
        "exact_budgets": by_lsd["exact_budgets"],
        "bounded_budgets": by_lsd["bounded_budgets"],
    }


def _summary_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """``summary.md``: one row per run."""
    header = [
        "run", "overrides", "model", "dataset", "scheduler", "extractor", "samples", "method",
        "LSD avg [95 %]", "LSD min", "LSD max", "seconds avg", "seconds min", "seconds max",
        "morse vs reuse (LSD avg)", "oracle (LSD avg)", "exact / bound budgets",
    ]  # fmt: skip
    body = [
        [
            row["run"], row["overrides"] or "(none)",
            *(str(row[key]) for key in CONTEXT_KEYS), row["method"],
            format_number(row["lsd_average"], ".2f")
            + (f" [{row['lsd_low']:.2f}, {row['lsd_high']:.2f}]" if row["lsd_low"] is not None else ""),
            *(
                format_number(row[f"{cost}_{stat}"], ".2f")
                for cost, stats in (("lsd", ("min", "max")), ("seconds", ("average", "min", "max")))
                for stat in stats
            ),
            format_number(row["morse_vs_reuse_lsd_average"], ".2f"),
            format_number(row["oracle_lsd_average"], ".2f"),
            f"{row['exact_budgets']} / {row['bounded_budgets']}",
        ]
        for row in rows
    ]
    lines = [
        "# Lossless speedup over the baseline, per run",
        "",
        (
            "Speedups are the run's method (Morse, else the rival it ran, else reuse) vs baseline over "
            "the exactly defined budgets (bounds left out), in LSD (latency of one Dash step) and in "
            "wall-clock seconds; [95 %]: bootstrap interval; oracle: the pattern's ceiling."
        ),
        "",
        *markdown_table(header, body),
    ]
    return "\n".join(lines) + "\n"


def _summary_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``summary.csv``: one row per run, columns :data:`SUMMARY_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _error_bar(row: Mapping[str, Any]) -> tuple[float, float]:
    """(below, above) the run's average LSD speedup: its 95 % bootstrap interval, or the
    min-max over budgets where it has none (a single exact budget); (0, 0) without an average."""
    average = row["lsd_average"]
    if average is None:
        return 0.0, 0.0
    low, high = (row["lsd_low"], row["lsd_high"]) if row["lsd_low"] is not None else (row["lsd_min"], row["lsd_max"])
    return average - low, high - average


def figure_title(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary figure's title: the methods its runs measured, e.g. "Morse / stitch vs baseline,
    per run"."""
    methods = sorted({row["method"] for row in rows})
    return " / ".join(METHOD_NAMES.get(method, method) for method in methods) + " vs baseline, per run"


def _settings(rows: Sequence[Mapping[str, Any]]) -> tuple[list[list[str]], set[str]]:
    """Each run's overrides that name it, and those every run shares (when there are several):
    path-valued ones (dot_checkpoint=..., roots) only clutter a figure and are left out."""
    overrides = [[item for item in row["overrides"].split() if "/" not in item.partition("=")[2]]
                 for row in rows]
    return overrides, set.intersection(*map(set, overrides)) if len(rows) > 1 else set()


def run_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary figure's tick label per run: its settings that not every run shares (paths
    left out), led by its sampler where the runs' samplers differ (a run's overrides need not
    name it: an experiment config may set it), and its place where settings alone do not tell it
    from another run."""
    overrides, shared = _settings(rows)
    if len({row["scheduler"] for row in rows}) > 1:
        overrides = [[row["scheduler"], *(item for item in items if not item.startswith("scheduler="))]
                     for items, row in zip(overrides, rows, strict=True)]
    common = os.path.commonpath([row["run"] for row in rows]) if len(rows) > 1 else ""
    places = [textwrap.fill(os.path.relpath(row["run"], common) if common else row["run"], 24) for row in rows]
    places = [row["run"] if place == "." else place for place, row in zip(places, rows, strict=True)]
    labels = ["\n".join(textwrap.fill(item, 24) for item in items if item not in shared) for items in overrides]
    return [place if not label else label + "\n" + place if labels.count(label) > 1 else label
            for label, place in zip(labels, places, strict=True)]


def summary_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """``summary.png``'s figure: average LSD speedup per run with its 95 % interval, the oracle
    Dot's average (the pattern's ceiling) as a black tick above runs that measured it, a line at 1x."""
    averages = [float("nan") if row["lsd_average"] is None else row["lsd_average"] for row in rows]
    lows, highs = zip(*map(_error_bar, rows), strict=True)
    _, shared = _settings(rows)
    figure = Figure(figsize=(max(5.0, 1.8 * len(rows) + 1.5), 4.8))
    axes = figure.add_subplot()
    positions = range(len(rows))
    bars = axes.bar(positions, averages, yerr=[list(lows), list(highs)], capsize=4, color="tab:blue", alpha=0.8)
    axes.bar_label(
        bars,
        labels=["" if math.isnan(average) else f"{average:.2f}x" for average in averages],
        label_type="center",
        color="white",
    )
    ceilings = [(position, row["oracle_lsd_average"]) for position, row in zip(positions, rows, strict=True)
                if row["oracle_lsd_average"] is not None]
    if ceilings:
        axes.scatter(*zip(*ceilings, strict=True), marker="_", s=900, linewidths=2.5, color="black", zorder=3,
                     label="oracle Dot (ceiling)")
        top = max([value for _, value in ceilings] + [a + h for a, h in zip(averages, highs, strict=True)
                                                       if not math.isnan(a)])
        axes.set_ylim(0, 1.2 * top)  # room for the legend above the highest tick or bar
        axes.legend(loc="upper right", fontsize=8, markerscale=0.5)
    axes.axhline(1.0, color="black", linewidth=1, linestyle="--", zorder=0.5)  # behind bars
    axes.set_xticks(list(positions), run_labels(rows), fontsize=8)
    with_interval = all(row["lsd_low"] is not None for row in rows if row["lsd_average"] is not None)
    axes.set_ylabel("lossless speedup in LSD\n(average, " + ("95 % interval)" if with_interval else
                                                             "95 % interval, else min-max)"))
    title = figure_title(rows)
    # the settings every run shares, wrapped to the figure's width (summary.md lists them per run)
    width = round(figure.get_figwidth() * 14)
    axes.set_title(textwrap.fill(title + (f" ({' '.join(sorted(shared))})" if shared else ""), width), fontsize=9)
    axes.grid(True, axis="y", alpha=0.3)
    return figure


def write_summary(
    dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Gather every run under ``dirs`` into ``summary.md``, ``summary.csv`` and ``summary.png``.

    Raises:
        ValueError: a DIR is not a directory or holds no ``results.jsonl``, or a run cannot be
            summarized.
    """
    run_dirs: list[Path] = []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ValueError(f"{directory} is not a directory")
        runs = find_runs(directory)
        if not runs:
            raise ValueError(f"no results.jsonl under {directory}")
        run_dirs += runs
    out = Path(out_dir)
    rows = [_summary_row(run_dir, out) for run_dir in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.md", out / "summary.csv", out / "summary.png"]
    write_atomic(paths[0], _summary_markdown(rows).encode())
    write_atomic(paths[1], _summary_csv(rows).encode())
    write_atomic(paths[2], figure_bytes(summary_figure(rows)))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 on success, 2 on a usage or data error)."""
    parser = argparse.ArgumentParser(
        prog="python -m morse_exp.report",
        description="Summarize the lossless speedup of evaluate runs (single or Hydra multirun).",
    )
    parser.add_argument(
        "dirs", nargs="+", type=Path, metavar="DIR",
        help="an evaluate run directory (with results.jsonl) or a multirun directory above runs",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write summary.* (default: the first DIR)"
    )
    args = parser.parse_args(argv)
    try:
        paths = write_summary(args.dirs, args.out or args.dirs[0])
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
