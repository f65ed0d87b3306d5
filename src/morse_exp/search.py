"""Schedule search: ``python -m morse_exp.search dot_checkpoint=<dot dir> lsd_budgets=[...]``.

For each LSD budget B, with a trained Dot and this machine's N (as evaluate reads it):

1. **Scan.** Every fine step count n the budget affords gets the most Dash steps d that fit
   (d + (n - d) / N <= B), spread evenly; the fixed strides' schedules at B join them. Each is
   scored on the calibration set. Step counts and gaps the Dot was not trained on are skipped.
2. **Refine.** For the ``refine_top`` best step counts, coordinate search over the Dash
   positions: each position but step 0 is moved one step earlier or later (gaps kept within
   the Dot's trained range) and the move is kept when the score improves; rounds repeat until
   one changes nothing or ``max_rounds`` is reached.

Score (higher is better): ``objective=psnr``, the mean PSNR (dB) of the calibration samples
against Dash at every step with ``reference_steps`` steps from the same noise (deterministic
samplers); ``objective=fid``, minus the FID of the calibration samples under the dataset's
metric (any sampler); ``objective=speedup``, the lossless speedup that FID reads off the
baseline's curve on the same calibration samples (every-step Dash from ``baseline_from`` to
``baseline_reach`` x the largest budget, as evaluate runs it): the cost the baseline needs
for that FID over the cost the schedule spends, which is what the report averages, so a
schedule is not rewarded for spending budget on quality the baseline buys cheaper. The
calibration set is samples 0..num_samples-1 of ``seed``: keep it
apart from the seeds evaluate reports on.

Writes into the run directory: ``schedules.yaml`` (read by ``jump_stride=searched
jump_stride.path=...``), ``search.json`` (every scored schedule) and ``search.md`` (per
budget, the searched schedule beside the fixed strides, on the calibration set), each
rewritten after every budget; and ``measured.jsonl``, one line per schedule measured (its PSNR
or FID), so that a stopped search run again in the same directory measures only what it had
not (a line counts where the weights, sampler, calibration set and measure are the same).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from morse_exp.atomic import write_atomic
from morse_exp.checkpoints import dash_fingerprint, dot_fingerprint, load_dot_weights
from morse_exp.cli import entry_point
from morse_exp.evaluate import (
    append_record,
    baseline_budgets,
    check_budgets,
    check_dot_record,
    check_run_settings,
    deciding_metric,
    read_finished,
    resolve_speed_ratio,
)
from morse_exp.fidelity import check_deterministic, psnr
from morse_exp.generation import generate
from morse_exp.progress import Progress
from morse_exp.report import lossless_speedup
from morse_exp.schedule import DashSchedule, JumpPattern

OBJECTIVES = ("psnr", "fid", "speedup")
MEASURED_NAME = "measured.jsonl"
Score = Callable[[DashSchedule], float]


def affordable_schedules(
    budget: float, speed_ratio: float, max_gap: int, fine_steps: tuple[int, int]
) -> list[DashSchedule]:
    """For every step count n in ``fine_steps`` that fits ``budget`` (LSD) with at least one Dash
    step, the most Dash steps that fit, spread evenly (sampling ends on Dot steps); schedules
    with a gap above ``max_gap`` are left out. Every-step Dash at floor(budget) is included when
    its n is in range."""
    lo, hi = fine_steps
    schedules = []
    top = math.floor(speed_ratio * (budget - 1) + 1 + 1e-9) if speed_ratio > 1 else math.floor(budget)
    for n in range(max(lo, 1), min(hi, top) + 1):
        if n <= budget + 1e-9:
            dash_calls = n
        else:  # d + (n - d) / N <= B  <=>  d <= (B - n / N) / (1 - 1 / N)
            dash_calls = min(n, math.floor((budget - n / speed_ratio) / (1 - 1 / speed_ratio) + 1e-9))
        if dash_calls < 1:
            continue
        schedule = DashSchedule.spread(n, dash_calls)
        if schedule.max_gap <= max_gap and schedule.lsd(speed_ratio) <= budget + 1e-9:
            schedules.append(schedule)
    return schedules


def neighbours(schedule: DashSchedule, max_gap: int) -> list[DashSchedule]:
    """Schedules with one Dash position (not step 0) moved one step, gaps kept <= ``max_gap``."""
    found = []
    steps = list(schedule.dash_steps)
    for j in range(1, len(steps)):
        for move in (-1, 1):
            moved = [*steps[:j], steps[j] + move, *steps[j + 1 :]]
            if moved[j] <= moved[j - 1] or (j + 1 < len(moved) and moved[j] >= moved[j + 1]) \
                    or moved[j] >= schedule.num_steps:
                continue
            candidate = DashSchedule(schedule.num_steps, tuple(moved))
            if candidate.max_gap <= max_gap:
                found.append(candidate)
    return found


def refine(start: DashSchedule, score: Score, max_gap: int, max_rounds: int) -> tuple[DashSchedule, float]:
    """Coordinate search from ``start``: each round tries every one-step move of every Dash
    position and keeps the best improving one; stops when a round improves nothing or after
    ``max_rounds`` rounds. Returns the best schedule and its score."""
    best, best_score = start, score(start)
    for _ in range(max_rounds):
        scored = [(score(candidate), candidate) for candidate in neighbours(best, max_gap)]
        improving = [(value, candidate) for value, candidate in scored if value > best_score]
        if not improving:
            break
        best_score, best = max(improving, key=lambda pair: pair[0])
    return best, best_score


def search_budget(
    budget: float, speed_ratio: float, max_gap: int, fine_steps: tuple[int, int], score: Score,
    refine_top: int, max_rounds: int,
) -> dict[str, Any]:
    """Scan and refine at one budget. Returns ``{"schedule", "score", "strides"}``, strides
    being stride K -> (schedule, score) for the fixed patterns K = 1..max_gap that fit."""
    strides = {}
    for stride in range(1, max_gap + 1):
        schedule = JumpPattern(stride=stride).fit_budget(budget, speed_ratio)
        if fine_steps[0] <= schedule.num_steps <= fine_steps[1] or stride == 1:
            strides[stride] = (schedule, score(schedule))
    scanned = [(score(s), s) for s in affordable_schedules(budget, speed_ratio, max_gap, fine_steps)]
    scanned += [(value, schedule) for schedule, value in strides.values()]
    best_per_n: dict[int, tuple[float, DashSchedule]] = {}
    for value, schedule in scanned:
        if schedule.num_steps not in best_per_n or value > best_per_n[schedule.num_steps][0]:
            best_per_n[schedule.num_steps] = (value, schedule)
    starts = sorted(best_per_n.values(), key=lambda pair: -pair[0])[:refine_top]
    refined = [refine(schedule, score, max_gap, max_rounds) for _, schedule in starts]
    schedule, value = max(refined, key=lambda pair: pair[1])
    return {"schedule": schedule, "score": value, "strides": strides}


def most_scored(
    budget: float, speed_ratio: float, max_gap: int, fine_steps: tuple[int, int], refine_top: int, max_rounds: int
) -> int:
    """An upper bound on the schedules :func:`search_budget` scores (for its progress report):
    the strides, the scan, and every move of every round of every refined start."""
    scan = affordable_schedules(budget, speed_ratio, max_gap, fine_steps)
    most_dash = max((s.dash_calls for s in scan), default=1)
    return max_gap + len(scan) + refine_top * (1 + max_rounds * 2 * max(0, most_dash - 1))


def check_search_settings(cfg: DictConfig) -> list[float]:
    """One-line ValueErrors for the search's own settings, before any work; returns the budgets."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective={cfg.objective!r} is invalid: use one of {', '.join(OBJECTIVES)}")
    if cfg.objective == "psnr":
        try:
            check_deterministic(cfg.scheduler.name)
        except ValueError:
            raise ValueError(f"objective=psnr needs a deterministic sampler, but scheduler={cfg.scheduler.name} "
                             "draws fresh noise at every step: use objective=fid") from None
    for key, least in (("num_samples", 1), ("refine_top", 1), ("max_rounds", 0)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{key}={value!r} is invalid: use an integer >= {least}")
    budgets = check_budgets(cfg.lsd_budgets)
    if not cfg.dot_checkpoint:
        raise ValueError("dot_checkpoint is not set: the search needs a trained Dot (dot_checkpoint=<train run dir>/dot)")
    return budgets


def search_range(cfg: DictConfig, record: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    """(largest gap K, fine step range) the search may use: the Dot's trained coverage, or a
    narrower ``max_gap``; one-line ValueError for a wider one or a Dot that records none."""
    coverage = record.get("coverage") or {}
    trained = coverage.get("max_gap")
    if cfg.max_gap is not None:
        if isinstance(cfg.max_gap, bool) or not isinstance(cfg.max_gap, int) or cfg.max_gap < 1 \
                or (trained is not None and cfg.max_gap > trained):
            raise ValueError(f"max_gap={cfg.max_gap!r} is invalid: use an integer in 1..{trained or 'K'} (the Dot "
                             f"{cfg.dot_checkpoint} was trained for gaps up to {trained})")
        return cfg.max_gap, tuple(coverage.get("fine_steps", (1, 10**6)))
    if trained is None:
        raise ValueError(f"Dot {cfg.dot_checkpoint} records no trained gaps: set max_gap=<the largest gap it was "
                         "trained for>")
    return int(trained), tuple(coverage["fine_steps"])


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search a schedule per budget; write schedules.yaml, search.json and search.md."""
    check_run_settings(cfg)
    budgets = check_search_settings(cfg)
    ladder = baseline_budgets(budgets, cfg.baseline_reach, cfg.baseline_from) if cfg.objective == "speedup" else None
    max_gap, fine_steps = search_range(cfg, check_dot_record(cfg))
    metric = None
    if cfg.objective in ("fid", "speedup"):
        datamodule = hydra.utils.instantiate(cfg.dataset)
        datamodule.check_available()
        metric = hydra.utils.instantiate(cfg.metric)(datamodule=datamodule, num_samples=cfg.num_samples)
        metric.check()
    dash = hydra.utils.instantiate(cfg.model).to(cfg.device)
    if dash.conditioning is not None:
        raise ValueError(f"the search runs unconditional Dash models; {dash.source} is {dash.conditioning}-conditioned")
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).to(cfg.device).eval()
    load_dot_weights(dot, cfg.dot_checkpoint)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speed_ratio = resolve_speed_ratio(cfg, dash, dot, out_dir, None, given=cfg.speed_ratio)
    make_scheduler = hydra.utils.instantiate(cfg.scheduler)

    def draw(schedule: DashSchedule) -> Any:
        return generate(dash, lambda: make_scheduler(base_config=dash.scheduler_config), schedule, cfg.seed,
                        cfg.num_samples, cfg.batch_size, cfg.device, dot=dot, precision=cfg.precision).images

    measure_name = "psnr" if cfg.objective == "psnr" else "fid"
    reference_steps = (cfg.reference_steps or math.ceil(1.5 * max(budgets))) if measure_name == "psnr" else None
    dash_weights = dash_fingerprint(dash)
    dash_only = measurement_hash(cfg, reference_steps, dash_weights, None)
    with_dot = measurement_hash(cfg, reference_steps, dash_weights, dot_fingerprint(dot))
    measured_path = out_dir / MEASURED_NAME
    measured = {(r["hash"], r["num_steps"], tuple(r["dash_steps"])): r[measure_name]
                for r in read_finished(measured_path) if r.get("hash") in (dash_only, with_dot)}
    if measured:
        print(f"{len(measured)} schedules already measured in {measured_path}: not sampled again")
    reference: list[Any] = []  # drawn once, when a PSNR is first measured

    def measure(schedule: DashSchedule) -> float:
        """The schedule's PSNR or FID on the calibration set, from measured.jsonl where it is there."""
        key = (dash_only if schedule.dot_calls == 0 else with_dot, schedule.num_steps, schedule.dash_steps)
        if key not in measured:
            images = draw(schedule)
            if measure_name == "psnr":
                if not reference:
                    reference.append(draw(DashSchedule.every_step(reference_steps)))
                measured[key] = psnr(images, reference[0])
            else:
                measured[key] = metric.compute(images)["fid"]
            append_record(measured_path, {"hash": key[0], "num_steps": key[1], "dash_steps": list(key[2]),
                                          measure_name: measured[key]})
        return measured[key]

    baseline = baseline_curve(measure, ladder) if cfg.objective == "speedup" else None
    scores: dict[tuple[int, tuple[int, ...]], float] = {}
    fids: dict[tuple[int, tuple[int, ...]], float] = {}
    progress: Progress | None = None

    def score(schedule: DashSchedule) -> float:
        key = (schedule.num_steps, schedule.dash_steps)
        if key not in scores:
            value = measure(schedule)
            if measure_name == "psnr":
                scores[key] = value
            else:
                fids[key] = value
                point = {"lsd": schedule.lsd(speed_ratio), "fid": value}
                scores[key] = -value if baseline is None else lossless_speedup(baseline, [point])[0]["speedup"]
            progress.update(1, f"n = {schedule.num_steps}, {len(schedule.dash_steps)} Dash steps")
        return scores[key]

    found = {}
    for budget in budgets:
        before = len(scores)
        progress = Progress(f"search @ {budget:g} LSD (schedules scored, of at most)",
                            most_scored(budget, speed_ratio, max_gap, fine_steps, cfg.refine_top, cfg.max_rounds))
        found[budget] = search_budget(budget, speed_ratio, max_gap, fine_steps, score, cfg.refine_top, cfg.max_rounds)
        progress.close()
        best = found[budget]
        stride, (_, stride_score) = max(best["strides"].items(), key=lambda item: item[1][1])
        print(f"{budget:g} LSD: n = {best['schedule'].num_steps}, Dash at {list(best['schedule'].dash_steps)}, "
              f"{cfg.objective} {_shown(best['score'], cfg.objective):.3f} (best stride {stride}: "
              f"{_shown(stride_score, cfg.objective):.3f}); {len(scores) - before} schedules scored", flush=True)
        summary = write_search(out_dir, cfg, speed_ratio, found, scores, fids, baseline)
    return summary, {"dash": dash, "dot": dot, "found": found}


def measurement_hash(cfg: DictConfig, reference_steps: int | None, dash_weights: str, dot_weights: str | None) -> str:
    """Hash of what decides a schedule's measure on the calibration set: the Dash's weights, the
    Dot's (``None`` for a schedule without Dot steps) and its construction, the sampler, the
    calibration samples, the precision and the measure itself (PSNR against ``reference_steps``
    every-step Dash, or FID under the metric). Not N, the budgets or the search's own settings:
    a schedule's samples depend on its steps alone."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    decided = {
        "dash": dash_weights, "dot": dot_weights and [dot_weights, resolved["dot"]],
        "scheduler": resolved["scheduler"], "seed": cfg.seed, "num_samples": cfg.num_samples,
        "precision": cfg.precision, "reference_steps": reference_steps,
        "metric": None if reference_steps is not None else (resolved["dataset"], deciding_metric(resolved["metric"])),
    }
    return hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()[:16]


def baseline_curve(measure: Callable[[DashSchedule], float], budgets: list[float]) -> list[dict[str, float]]:
    """The baseline's (LSD, FID) points on the calibration samples: every-step Dash with
    floor(B) steps for each budget B; ``measure`` gives a schedule's FID."""
    steps = sorted({math.floor(budget) for budget in budgets})
    progress = Progress("search: baseline curve (step counts)", len(steps))
    points = []
    for n in steps:
        points.append({"lsd": float(n), "fid": measure(DashSchedule.every_step(n))})
        progress.update(1, f"{n} steps: FID {points[-1]['fid']:.3f}")
    progress.close()
    return points


def _shown(value: float, objective: str) -> float:
    """A score as the objective reads (FID: lower is better, stored negated)."""
    return -value if objective == "fid" else value


def write_search(
    out_dir: Path, cfg: DictConfig, speed_ratio: float, found: dict[float, dict[str, Any]],
    scores: dict[tuple[int, tuple[int, ...]], float], fids: dict[tuple[int, tuple[int, ...]], float],
    baseline: list[dict[str, float]] | None,
) -> dict[str, Any]:
    """schedules.yaml (for jump_stride=searched), search.json (with every scored schedule's FID
    where one was computed, and the baseline curve of objective=speedup) and search.md, each
    atomically."""
    objective = cfg.objective
    provenance = {"objective": objective, "dot_checkpoint": str(cfg.dot_checkpoint), "scheduler": cfg.scheduler.name,
                  "calibration": {"seed": cfg.seed, "num_samples": cfg.num_samples}}
    schedules = {float(b): {"num_steps": r["schedule"].num_steps, "dash_steps": list(r["schedule"].dash_steps),
                            objective: round(_shown(r["score"], objective), 6)} for b, r in found.items()}
    pattern = {"speed_ratio": speed_ratio, **provenance, "schedules": schedules}
    header = (f"# Dash schedules found by python -m morse_exp.search ({objective} on seed {cfg.seed}, "
              f"{cfg.num_samples} samples); use: jump_stride=searched jump_stride.path=<this file>\n")
    write_atomic(out_dir / "schedules.yaml", (header + yaml.safe_dump(pattern, sort_keys=False)).encode())
    summary = {**pattern, "config": OmegaConf.to_container(cfg, resolve=True),
               "scored": [{"num_steps": n, "dash_steps": list(steps), objective: _shown(v, objective),
                           **({"fid": fids[(n, steps)]} if (n, steps) in fids else {})}
                          for (n, steps), v in scores.items()],
               "baseline": baseline,
               "strides": {str(b): {str(k): {"num_steps": s.num_steps, objective: _shown(v, objective)}
                                    for k, (s, v) in r["strides"].items()} for b, r in found.items()}}
    write_atomic(out_dir / "search.json", json.dumps(summary, indent=2, default=str).encode())
    better = "lower" if objective == "fid" else "higher"
    lines = [(f"# Searched schedules ({objective}, {better} is better; calibration seed {cfg.seed}, "
              f"{cfg.num_samples} samples; N = {speed_ratio:.2f})"), "",
             "| LSD | searched: n, Dash steps | searched | best stride | strides K: value (n) |", "|---:|---|---:|---:|---|"]
    for budget, result in found.items():
        strides = result["strides"]
        best_stride = max(strides, key=lambda k: strides[k][1])
        listed = ", ".join(f"{k}: {_shown(v, objective):.3f} ({s.num_steps})" for k, (s, v) in strides.items())
        lines.append(f"| {budget:g} | {result['schedule'].num_steps}: {list(result['schedule'].dash_steps)} | "
                     f"{_shown(result['score'], objective):.3f} | {_shown(strides[best_stride][1], objective):.3f} "
                     f"(K = {best_stride}) | {listed} |")
    write_atomic(out_dir / "search.md", ("\n".join(lines) + "\n").encode())
    print(f"schedules written to {out_dir / 'schedules.yaml'}")
    return summary


@entry_point("search")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    main()
