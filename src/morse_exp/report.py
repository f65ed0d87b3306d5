"""Lossless speedup read off quality-vs-cost curves, and the reports that show it.

Input: result records, one dict per (method, budget), stored one JSON object per line in
``results.jsonl`` by an evaluate run. Keys used here: ``method`` ("baseline", "reuse",
"morse", "oracle" or a rival: "deepcache", "stitch", "morse_deepcache"), ``lsd_budget`` (the requested budget, LSD), ``lsd`` (the point's actual cost, LSD),
``seconds`` (wall-clock seconds to generate the point's samples), a quality metric (``fid`` by
default), ``extractor`` (FID feature extractor) and ``num_samples``; ``model``, ``dataset`` and
``scheduler`` are copied into the report when present.

Lossless speedup (Li, Fan, Yao, "Morse: Dual-Sampling for Lossless Acceleration of Diffusion
Models", ICML 2025, arXiv 2506.18251): for a point of a method with quality q at
cost c, the cost the reference (the baseline) needs to reach q, divided by c. The reference
cost is read off the reference curve made monotone (running best along increasing cost), with
log(cost) interpolated linearly in the metric. Where q lies outside the reference's range the
ratio is only a bound, flagged ``">="`` or ``"<="``; averages use exactly defined points only.

CLI: ``python -m morse_exp.report DIR [DIR ...] [--out OUT]`` gathers every ``results.jsonl``
under the DIRs into one table and figure (:mod:`morse_exp.summary`).
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import statistics
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from morse_exp.atomic import write_atomic

Record = Mapping[str, Any]
Bound = Literal[">=", "<="] | None

COMPARISONS: tuple[tuple[str, str], ...] = (
    ("morse", "baseline"),
    ("reuse", "baseline"),
    ("oracle", "baseline"),
    ("deepcache", "baseline"),
    ("stitch", "baseline"),
    ("morse_deepcache", "baseline"),
    ("morse", "reuse"),
)
"""(method, reference) pairs reported; a pair is skipped when either method has no records."""

COST_KEYS: tuple[str, ...] = ("lsd", "seconds")
CONTEXT_KEYS: tuple[str, ...] = ("model", "dataset", "scheduler", "extractor", "num_samples")
"""Keys that must take one value across the records of one report (a curve mixes nothing)."""

METHOD_ORDER: tuple[str, ...] = ("baseline", "reuse", "morse", "oracle", "deepcache", "stitch", "morse_deepcache")
METHOD_STYLE: dict[str, dict[str, Any]] = {
    "baseline": {"color": "black", "marker": "o", "linestyle": "-"},
    "reuse": {"color": "tab:orange", "marker": "s", "linestyle": "--"},
    "morse": {"color": "tab:blue", "marker": "^", "linestyle": "-"},
    "oracle": {"color": "tab:gray", "marker": "v", "linestyle": ":"},
    "deepcache": {"color": "tab:green", "marker": "D", "linestyle": "-."},
    "stitch": {"color": "tab:purple", "marker": "P", "linestyle": "-."},
    "morse_deepcache": {"color": "tab:cyan", "marker": "X", "linestyle": "-"},
}
COST_LABEL = {"lsd": "LSD", "seconds": "seconds"}


class SpeedupEntry(TypedDict):
    """Lossless speedup of one method point against a reference curve.

    Attributes:
        budget: the point's requested budget (``lsd_budget``, LSD).
        cost: the point's cost, in the unit of the cost key (LSD or seconds).
        quality: the point's metric value.
        reference_cost: the cost the reference needs for that quality (same unit as ``cost``);
            for a bound, the reference's largest (">=") or smallest ("<=") cost.
        speedup: ``reference_cost / cost`` (dimensionless).
        bound: None when exact; ">=" when the point beats every reference point; "<=" when it is
            worse than every reference point.
    """

    budget: float | None
    cost: float
    quality: float
    reference_cost: float
    speedup: float
    bound: Bound


class ReportPaths(NamedTuple):
    """Files written by :func:`write_report`."""

    json: Path
    markdown: Path
    plot: Path


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, or not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(value) else None


def _curve(
    points: Sequence[Record], cost_key: str, metric: str
) -> list[tuple[float, float, Record]]:
    """(cost, metric value, point) for points with a positive finite cost and a finite metric.

    Sorted by increasing cost; points without a usable cost or metric are left out.
    """
    usable = []
    for point in points:
        cost, quality = _finite(point.get(cost_key)), _finite(point.get(metric))
        if cost is not None and cost > 0 and quality is not None:
            usable.append((cost, quality, point))
    return sorted(usable, key=lambda item: item[0])


def _frontier(
    reference: Sequence[Record], cost_key: str, metric: str, lower_is_better: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The reference curve made monotone: (log costs, scores) of its running-best points.

    A score is the metric oriented so that lower is better. Only the points where the running
    best strictly improves are kept, so costs increase and scores strictly decrease.
    """
    sign = 1.0 if lower_is_better else -1.0
    curve = _curve(reference, cost_key, metric)
    scored = sorted((cost, sign * quality) for cost, quality, _ in curve)  # equal costs: best first
    if not scored:
        raise ValueError(
            f"the reference curve has no point with a finite {metric!r} and a positive {cost_key!r}"
        )
    log_costs, scores = [], []
    for cost, score in scored:
        if not scores or score < scores[-1]:
            log_costs.append(math.log(cost))
            scores.append(score)
    return np.array(log_costs), np.array(scores)


def lossless_speedup(
    reference: Sequence[Record],
    method: Sequence[Record],
    cost_key: str = "lsd",
    metric: str = "fid",
    lower_is_better: bool = True,
) -> list[SpeedupEntry]:
    """Lossless speedup of each ``method`` point over the ``reference`` curve.

    For a method point of quality q at cost c (in the unit of ``cost_key``: LSD or seconds),
    the speedup is the cost the reference needs to reach q divided by c. That cost is read off
    the reference curve made monotone with a running best along increasing cost, interpolating
    log(cost) linearly in the metric. If q beats every reference point the result is the lower
    bound ``max reference cost / c`` (``bound=">="``); if q is worse than every reference point
    it is the upper bound ``min reference cost / c`` (``bound="<="``).

    Points (of either curve) without a positive finite cost or a finite metric are skipped.

    Args:
        reference: records of the reference method (the baseline), any order.
        method: records of the method to rate.
        cost_key: record key holding the cost ("lsd" or "seconds").
        metric: record key holding the quality ("fid", "kid", "psnr", ...).
        lower_is_better: True for fid/kid, False for psnr/ssim/clip score.

    Returns:
        One entry per usable method point, by increasing cost.

    Raises:
        ValueError: the reference has no usable point.
    """
    log_costs, scores = _frontier(reference, cost_key, metric, lower_is_better)
    sign = 1.0 if lower_is_better else -1.0
    entries: list[SpeedupEntry] = []
    for cost, quality, point in _curve(method, cost_key, metric):
        score = sign * quality
        bound: Bound = None
        if score < scores[-1]:
            bound, log_needed = ">=", log_costs[-1]
        elif score > scores[0]:
            bound, log_needed = "<=", log_costs[0]
        else:
            log_needed = float(np.interp(score, scores[::-1], log_costs[::-1]))
        reference_cost = math.exp(log_needed)
        entries.append(
            SpeedupEntry(
                budget=_finite(point.get("lsd_budget")),
                cost=cost,
                quality=quality,
                reference_cost=reference_cost,
                speedup=reference_cost / cost,
                bound=bound,
            )
        )
    return entries


def _speedup_stats(entries: Sequence[SpeedupEntry]) -> dict[str, Any]:
    """Average, min and max speedup over the exactly defined entries; counts of each kind."""
    exact = [entry["speedup"] for entry in entries if entry["bound"] is None]
    return {
        "average": statistics.fmean(exact) if exact else None,
        "min": min(exact, default=None),
        "max": max(exact, default=None),
        "exact_budgets": len(exact),
        "bounded_budgets": len(entries) - len(exact),
    }


def _bootstrap_records(records: Sequence[Record], metric: str) -> list[list[Record]]:
    """One copy of ``records`` per bootstrap resample, ``metric`` replaced by that resample's
    value (``<metric>_bootstrap`` lists); none unless every record has a list of one length."""
    lists = [record.get(f"{metric}_bootstrap") for record in records]
    if not lists or not all(isinstance(values, list) and values for values in lists):
        return []
    if len({len(values) for values in lists}) != 1:
        return []
    return [[{**record, metric: values[b]} for record, values in zip(records, lists, strict=True)]
            for b in range(len(lists[0]))]


def _interval(values: Sequence[float]) -> list[float] | None:
    """The central 95 % of ``values`` (percentiles 2.5 and 97.5), or None for fewer than 20."""
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if len(values) >= 20 else None


def _check_records(records: Sequence[Record], required: Sequence[str]) -> list[Record]:
    """The records, last one kept per (method, lsd_budget); raises if a required key is missing."""
    if not records:
        raise ValueError("no result records to report on")
    latest: dict[tuple[str, float], Record] = {}
    for index, record in enumerate(records):
        missing = [key for key in required if key not in record]
        if missing:
            raise ValueError(f"result record {index} lacks the keys {missing}")
        if _finite(record["lsd_budget"]) is None:
            raise ValueError(f"result record {index} has lsd_budget={record['lsd_budget']!r}")
        latest[(record["method"], float(record["lsd_budget"]))] = record
    if len(latest) < len(records):
        warnings.warn(
            f"{len(records) - len(latest)} result records repeat a (method, lsd_budget) pair; "
            "the last one of each pair is kept",
            stacklevel=3,
        )
    return list(latest.values())


def _context(records: Sequence[Record]) -> dict[str, Any]:
    """model/dataset/scheduler/extractor/num_samples of the records; raises if they disagree."""
    context: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        values = {json.dumps(record[key]) for record in records if key in record}
        if len(values) > 1:
            raise ValueError(
                f"the records mix {key} values {', '.join(sorted(values))}: one curve needs a "
                f"single {key}, report them separately"
            )
        context[key] = json.loads(values.pop()) if values else None
    return context


def _ordered_methods(methods: set[str]) -> list[str]:
    """Methods in display order: baseline, reuse, morse, then any others alphabetically."""
    known = [method for method in METHOD_ORDER if method in methods]
    return known + sorted(methods - set(METHOD_ORDER))


def summarize(
    records: Sequence[Record],
    metric: str = "fid",
    lower_is_better: bool = True,
    cost_keys: Sequence[str] = COST_KEYS,
) -> dict[str, Any]:
    """The lossless-speedup summary of one evaluate run (the content of ``speedup.json``).

    Args:
        records: result records of one run (see the module docstring); when a
            (method, lsd_budget) pair repeats, the last record wins (with a warning).
        metric: quality key; lower_is_better: its direction.
        cost_keys: cost keys to compute speedups on ("lsd": LSD, "seconds": wall clock).

    Returns:
        A JSON-ready dict: ``model``, ``dataset``, ``scheduler``, ``extractor``,
        ``num_samples``, ``metric``, ``lower_is_better``, ``cost_keys``, ``methods`` (those
        present, in display order), ``comparisons`` (``"<method>_vs_<reference>"`` -> cost key
        -> ``average``/``min``/``max`` speedup over exactly defined budgets, ``exact_budgets``,
        ``bounded_budgets``; no "seconds" entry where the points were timed in different runs:
        those comparisons are listed in ``seconds_across_runs``) and ``table`` (per budget: ``budget``, ``methods`` -> method ->
        metric and cost values, ``speedups`` -> comparison -> cost key -> ``speedup``,
        ``bound``, ``reference_cost``).

    Raises:
        ValueError: no records, a required key missing, records that mix extractors, sample
            counts, models, datasets or schedulers, or a reference without a usable point.
    """
    records = _check_records(
        records, ("method", "lsd_budget", "extractor", "num_samples", metric, *cost_keys)
    )
    context = _context(records)
    by_method: dict[str, list[Record]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    methods = _ordered_methods(set(by_method))

    budgets = sorted({float(record["lsd_budget"]) for record in records})
    table: dict[float, dict[str, Any]] = {
        budget: {"budget": budget, "methods": {}, "speedups": {}} for budget in budgets
    }
    for record in records:
        table[float(record["lsd_budget"])]["methods"][record["method"]] = {
            key: _finite(record[key]) for key in (metric, *cost_keys)
        }

    resampled = _bootstrap_records(records, metric)
    for record in records:  # bias-corrected 95 % interval of each point's metric
        values = record.get(f"{metric}_bootstrap") if resampled else None
        if values:
            shift = statistics.fmean(values) - float(record[metric])
            interval = _interval([value - shift for value in values])
            table[float(record["lsd_budget"])]["methods"][record["method"]][f"{metric}_interval"] = interval

    comparisons: dict[str, dict[str, Any]] = {}
    seconds_across_runs: list[str] = []
    for method, reference in COMPARISONS:
        if method not in by_method or reference not in by_method:
            continue
        name = f"{method}_vs_{reference}"
        comparisons[name] = {}
        for cost_key in cost_keys:
            if cost_key == "seconds" and not _timed_in_one_run(by_method[method] + by_method[reference]):
                seconds_across_runs.append(name)
                continue
            try:
                entries = lossless_speedup(
                    by_method[reference], by_method[method], cost_key, metric, lower_is_better
                )
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from error
            comparisons[name][cost_key] = _speedup_stats(entries)
            averages = []
            for copy in resampled:
                averages.append(_speedup_stats(lossless_speedup(
                    [r for r in copy if r["method"] == reference], [r for r in copy if r["method"] == method],
                    cost_key, metric, lower_is_better,
                ))["average"])
            usable = [value for value in averages if value is not None]
            comparisons[name][cost_key]["interval"] = _interval(usable)
            comparisons[name][cost_key]["resamples"] = len(usable)
            for entry in entries:
                table[entry["budget"]]["speedups"].setdefault(name, {})[cost_key] = {
                    "speedup": entry["speedup"],
                    "bound": entry["bound"],
                    "reference_cost": entry["reference_cost"],
                }
    return {
        **context,
        "metric": metric,
        "lower_is_better": lower_is_better,
        "cost_keys": list(cost_keys),
        "methods": methods,
        "comparisons": comparisons,
        "seconds_across_runs": seconds_across_runs,
        "table": list(table.values()),
    }


def _timed_in_one_run(records: Sequence[Record]) -> bool:
    """Whether the wall-clock seconds of ``records`` were all measured in one run: points
    copied from another run (``copied_from``) were timed under that run's load, so a seconds
    ratio against this run's points would not be a same-run ratio."""
    return len({record.get("copied_from") for record in records if _finite(record.get("seconds")) is not None}) <= 1


def figure_bytes(figure: Figure) -> bytes:
    """The figure rendered as PNG (Agg, no pyplot state)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def format_number(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "n/a" when missing."""
    return "n/a" if value is None else format(value, spec)


def _fmt_speedup(cell: Mapping[str, Any] | None) -> str:
    """A per-budget speedup cell: "2.01x", "≥3.10x" or "≤0.80x"."""
    if cell is None:
        return "n/a"
    prefix = {None: "", ">=": "≥", "<=": "≤"}[cell["bound"]]
    return f"{prefix}{cell['speedup']:.2f}x"


def _fmt_interval(interval: Sequence[float] | None) -> str:
    """" [lo, hi]" for an interval, "" when there is none."""
    return "" if not interval else f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Markdown table lines (cells have "|" escaped)."""
    lines = [header, ["---"] * len(header), *rows]
    return [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in line) + " |" for line in lines
    ]


def model_label(source: Any) -> str:
    """A model's name for tables and plots: a local directory by its name alone (the full path
    stays in the JSON records), a hub id whole."""
    source = str(source)
    return Path(source).name if Path(source).is_absolute() else source


def _title(summary: Mapping[str, Any]) -> str:
    """One line naming model, dataset, scheduler, what the metric measures and the sample count."""
    if summary["metric"] in ("psnr", "ssim"):
        measured = f"{summary['metric'].upper()} against every-step Dash from the same noise"
    else:
        measured = f"{summary['metric'].upper()} with {summary['extractor']} features"
    return (
        f"{model_label(summary['model'])} on {summary['dataset']}, {summary['scheduler']} scheduler; "
        f"{measured}, {summary['num_samples']} samples"
    )


def render_markdown(summary: Mapping[str, Any]) -> str:
    """``speedup.md``: the averages, then per-budget quality/cost and speedup tables."""
    metric, cost_keys = summary["metric"], summary["cost_keys"]
    direction = "lower" if summary["lower_is_better"] else "higher"
    lines = [
        f"# Lossless speedup: {_title(summary)}",
        "",
        (
            f"Speedup = the cost the reference needs to reach the method's {metric} ({direction} is "
            "better) / the method's cost, read off the curves made monotone. LSD = latency of one "
            "Dash step; seconds = wall clock. ≥ / ≤: the method's "
            f"{metric} lies outside the reference's range, so the value is only a bound; averages, "
            "min and max use exact budgets only. [lo, hi]: 95 % bootstrap interval of the average "
            f"(the samples' features resampled, {metric} and every read-off recomputed per resample)."
        ),
        "",
        "## Average lossless speedup",
        "",
    ]
    average_rows = [
        [
            name.replace("_", " "),
            COST_LABEL.get(cost_key, cost_key),
            format_number(stats["average"], ".2f") + _fmt_interval(stats.get("interval")),
            format_number(stats["min"], ".2f"),
            format_number(stats["max"], ".2f"),
            str(stats["exact_budgets"]),
            str(stats["bounded_budgets"]),
        ]
        for name, by_cost in summary["comparisons"].items()
        for cost_key, stats in by_cost.items()
    ]
    lines += markdown_table(
        ["comparison", "cost", "average [95 % interval]", "min", "max", "exact budgets", "bounds"], average_rows
    )
    if summary.get("seconds_across_runs"):
        lines += ["", (f"No speedup in seconds for {', '.join(n.replace('_', ' ') for n in summary['seconds_across_runs'])}: "
                       "their points were timed in different runs (copied_from), under different loads.")]

    methods = summary["methods"]
    value_keys = [metric, *cost_keys]
    lines += ["", "## Per budget: quality and cost", ""]
    lines += markdown_table(
        ["budget (LSD)"] + [f"{key} {method}" for key in value_keys for method in methods],
        [
            [f"{row['budget']:g}"]
            + [
                format_number(row["methods"].get(method, {}).get(key), ".4g")
                for key in value_keys
                for method in methods
            ]
            for row in summary["table"]
        ],
    )
    if summary["comparisons"]:
        lines += ["", "## Per budget: lossless speedup (budgets where a method other than the baseline ran)", ""]
        lines += markdown_table(
            ["budget (LSD)"]
            + [
                f"{name.replace('_', ' ')} ({COST_LABEL.get(cost_key, cost_key)})"
                for cost_key in cost_keys
                for name in summary["comparisons"]
            ],
            [
                [f"{row['budget']:g}"]
                + [
                    _fmt_speedup(row["speedups"].get(name, {}).get(cost_key))
                    for cost_key in cost_keys
                    for name in summary["comparisons"]
                ]
                for row in summary["table"]
                if row["speedups"]
            ],
        )
    lines += _throughput_lines(summary)
    return "\n".join(lines) + "\n"


def _throughput_lines(summary: Mapping[str, Any]) -> list[str]:
    """Images per second of Morse and of the baseline at Morse's quality, per budget.

    Both come from measured wall-clock seconds: Morse's ``num_samples / seconds`` at the budget,
    the baseline's ``num_samples / seconds it needs for that quality`` (read off its curve, a
    bound where Morse's quality lies outside the baseline's range).
    """
    if "seconds" not in summary["cost_keys"] or "morse_vs_baseline" not in summary["comparisons"]:
        return []
    rows = []
    for row in summary["table"]:
        cell = row["speedups"].get("morse_vs_baseline", {}).get("seconds")
        seconds = row["methods"].get("morse", {}).get("seconds")
        if cell is None or not seconds:
            continue
        bound = {">=": "≤", "<=": "≥"}.get(cell["bound"], "")  # more reference seconds, fewer images/s
        rows.append([
            f"{row['budget']:g}", format_number(row["methods"]["morse"].get(summary["metric"]), ".4g"),
            format_number(summary["num_samples"] / seconds, ".1f"),
            bound + format_number(summary["num_samples"] / cell["reference_cost"], ".1f"),
        ])
    if not rows:
        return []
    return ["", f"## Images per second at equal {summary['metric']} (measured wall clock)", "",
            *markdown_table(["budget (LSD)", f"{summary['metric']} morse", "images/s morse",
                        f"images/s baseline at that {summary['metric']}"], rows)]


def _plot_curves(axes: Axes, summary: Mapping[str, Any], cost_key: str) -> dict[str, Any]:
    """Metric vs cost (log x) for every method of the summary, on ``axes``.

    Each curve is joined in order of cost. On the LSD axis the ticks are the budgets of the
    methods other than the baseline (and the baseline's largest), labelled as numbers. Returns
    what was drawn: ``{"curves": {method: [(cost, value), ...]}, "xticks", "xlabel", "ylabel"}``.
    """
    metric = summary["metric"]
    values, curves = [], {}
    for method in summary["methods"]:
        points = sorted(
            (row["methods"][method][cost_key], row["methods"][method][metric])
            for row in summary["table"]
            if method in row["methods"]
            and row["methods"][method][cost_key] is not None
            and row["methods"][method][metric] is not None
        )
        if not points:
            continue
        label = method
        versus_baseline = summary["comparisons"].get(f"{method}_vs_baseline", {}).get(cost_key)
        if versus_baseline and versus_baseline["average"] is not None:
            label += f" (avg {versus_baseline['average']:.2f}x vs baseline)"
        costs, qualities = zip(*points, strict=True)
        values += qualities
        curves[method] = points
        axes.plot(costs, qualities, label=label, **METHOD_STYLE.get(method, {"marker": "x"}))
    log_axes = [axes.xaxis]
    if values and min(values) > 0 and max(values) / min(values) > 10:
        axes.set_yscale("log")
        log_axes.append(axes.yaxis)
    axes.set_xscale("log")
    for axis in log_axes:  # plain numbers at 1, 2, 5 x 10^k instead of crowded 10^k labels
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    xticks: list[float] = []
    if cost_key == "lsd":
        budgets = {row["budget"] for row in summary["table"] if set(row["methods"]) - {"baseline"}}
        baseline = [row["budget"] for row in summary["table"] if "baseline" in row["methods"]]
        xticks = sorted(budgets | ({max(baseline)} if baseline else set()))
        if xticks:
            axes.set_xticks(xticks)
            axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlabel(f"cost ({COST_LABEL.get(cost_key, cost_key)}, log scale)")
    direction = "lower" if summary["lower_is_better"] else "higher"
    axes.set_ylabel(f"{metric.upper()} ({direction} is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return {"curves": curves, "xticks": xticks, "xlabel": axes.get_xlabel(), "ylabel": axes.get_ylabel()}


def render_plot(summary: Mapping[str, Any], drawn: list[dict[str, Any]] | None = None) -> bytes:
    """``fid_vs_lsd.png``: one panel of metric vs cost per cost key, as PNG bytes; ``drawn``
    (if given) receives each panel's :func:`_plot_curves` record."""
    cost_keys = summary["cost_keys"]
    figure = Figure(figsize=(6 * len(cost_keys), 4.8))
    for index, cost_key in enumerate(cost_keys):
        panel = _plot_curves(figure.add_subplot(1, len(cost_keys), index + 1), summary, cost_key)
        if drawn is not None:
            drawn.append(panel)
    figure.suptitle(_title(summary))
    return figure_bytes(figure)


def write_report(
    records: Sequence[Record],
    out_dir: str | os.PathLike[str],
    metric: str = "fid",
    lower_is_better: bool = True,
) -> ReportPaths:
    """Write ``speedup.json``, ``speedup.md`` and ``fid_vs_lsd.png`` for one run into ``out_dir``.

    For another metric the files are ``speedup_<metric>.json``, ``speedup_<metric>.md`` and
    ``<metric>_vs_lsd.png``. Each file is written atomically (temporary file in ``out_dir``,
    then os.replace).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, metric, lower_is_better)
    stem = "speedup" if metric == "fid" else f"speedup_{metric}"
    paths = ReportPaths(out / f"{stem}.json", out / f"{stem}.md", out / f"{metric}_vs_lsd.png")
    write_atomic(paths.json, (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    write_atomic(paths.markdown, render_markdown(summary).encode())
    write_atomic(paths.plot, render_plot(summary))
    return paths


def read_results(path: str | os.PathLike[str], allow_cut_last: bool = True) -> list[dict[str, Any]]:
    """Records of a ``results.jsonl`` file (one JSON object per line).

    Blank lines are skipped. A last line that is not valid JSON (a write that was cut off) is
    ignored with a warning when ``allow_cut_last``; invalid JSON anywhere else raises a
    one-line ValueError naming the file and line.
    """
    lines = [
        (number, line)
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1)
        if line.strip()
    ]
    records = []
    for position, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if allow_cut_last and position == len(lines) - 1:
                warnings.warn(
                    f"{path}:{number}: ignoring a truncated last line (interrupted write?)",
                    stacklevel=2,
                )
                continue
            raise ValueError(
                f"{path}:{number}: not valid JSON ({error}): fix or delete that line, or start a new run directory"
            ) from error
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise ValueError(f"{path}:{number}: expected a JSON object, got {kind}")
        records.append(record)
    return records


if __name__ == "__main__":
    from morse_exp.summary import main

    sys.exit(main())
