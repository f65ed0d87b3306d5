"""FID-vs-LSD sweep and lossless-speedup report: ``python -m morse_exp.evaluate``.

For every LSD budget, three methods run through the one sampling loop at the same cost:
``baseline`` (Dash at every step, n = floor(budget)), ``reuse`` (Morse's schedule with a
zero Dot: the last Dash estimate is reused through ``dot.base``) and ``morse`` (Morse's schedule with the trained
Dot). N, the Dash/Dot latency ratio, is measured on this device first and fixes the
schedules. Every point appends one line to ``results.jsonl``; a rerun in the same run
directory skips points already there. The run ends with ``speedup.json``, ``speedup.md``,
``fid_vs_lsd.png`` and sample grids in ``samples/``. For deterministic samplers each point
also records its PSNR against Dash's own every-step samples (``fidelity``), with a second
report read off the PSNR-vs-LSD curves (``speedup_psnr.*``, ``psnr_vs_lsd.png``).

A conditional Dash gets context i for sample i: caption i of the held-out split (cycled) for
a text-conditioned Dash, with classifier-free guidance at ``guidance_scale`` and, with
``clip_score`` set, the CLIP score of every point; class i mod K for a class-conditional one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import nn

from morse_exp.atomic import write_atomic
from morse_exp.checkpoints import dash_fingerprint, dot_fingerprint, load_dot_weights, read_record
from morse_exp.cli import entry_point, instantiate_logger
from morse_exp.dash import Dash
from morse_exp.dot import method_dots
from morse_exp.extractors import check_image_shape
from morse_exp.fidelity import check_deterministic, psnr, ssim
from morse_exp.generation import autocast, generate
from morse_exp.images import save_grid
from morse_exp.progress import Progress
from morse_exp.report import read_results, write_report
from morse_exp.schedule import MAX_LSD_BUDGET, DashSchedule, JumpPattern
from morse_exp.schedulers import STOCHASTIC_SCHEDULERS, scheduler_options, with_step_defaults
from morse_exp.speed import machine_speed_ratio
from morse_exp.stacking import MorseDeepCache

RIVALS = ("deepcache", "stitch", "morse_deepcache")
"""Rival methods: each has a config group of its own name (a Dot-like module with ``pattern``
and ``config``) and is costed by its own N (``<name>_speed_ratio``, null: measured and stored;
for ``morse_deepcache``, Morse stacked with DeepCache, from Morse's N and its DeepCache's)."""
TRAINED_DOT_METHODS = ("morse", "morse_deepcache")
"""Methods that run the trained Dot of ``dot_checkpoint``."""
METHODS = ("baseline", "reuse", "morse", "oracle", *RIVALS)
RESULT_KEYS = ("model", "dataset", "scheduler", "jump_stride", "dot", "metric", "seed", "dot_checkpoint", "fidelity", "bootstrap",
               "guidance_scale", "clip_score")


def check_budgets(budgets: Any) -> list[float]:
    """Budgets as floats; one-line ValueError unless they are a list of numbers in
    [1, MAX_LSD_BUDGET], sorted and unique."""
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence):
        raise ValueError(f"lsd_budgets={budgets!r} is invalid: give a list of budgets in LSD, e.g. lsd_budgets=[3,6,10]")
    try:
        values = [float(b) for b in budgets]
    except (TypeError, ValueError):
        values = [float("nan")]
    if not values or any(not math.isfinite(b) or not 1 <= b <= MAX_LSD_BUDGET for b in values):
        raise ValueError(f"lsd_budgets={list(budgets)} is invalid: every budget must be a number in "
                         f"[1, {MAX_LSD_BUDGET}] LSD")
    if values != sorted(set(values)):
        raise ValueError(f"lsd_budgets={list(budgets)} is invalid: give them sorted and without duplicates")
    return values


def check_run_settings(cfg: DictConfig) -> None:
    """One-line ValueErrors for sample count, batch size, seed, device and precision, before
    any work."""
    count = "metric.num_samples" if "metric" in cfg else "num_samples"  # evaluate's / sample's key
    for key, least in ((count, 1), ("batch_size", 1), ("seed", 0)):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{key}={value!r} is invalid: use an integer >= {least}")
    device = str(cfg.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device} is invalid here: this machine has no CUDA GPU; use device=cpu")
    autocast(device, cfg.precision)  # refuses an unknown precision


def check_methods(methods: list[str], dot_checkpoint: str | None) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)} is invalid: choose from {', '.join(METHODS)}")
    needing = [m for m in methods if m in TRAINED_DOT_METHODS]
    if needing and dot_checkpoint is None:
        raise ValueError(
            f"method '{needing[0]}' needs a trained Dot: set dot_checkpoint=<train run dir>/dot, "
            "or methods=[baseline,reuse]"
        )
    return list(methods)


def schedule_for(method: str, budget: float, jump: JumpPattern, speed_ratio: float) -> DashSchedule:
    """The schedule a method gets for an LSD budget (baseline: every step Dash)."""
    if method == "baseline":
        return DashSchedule.every_step(math.floor(budget))
    return jump.fit_budget(budget, speed_ratio)


def baseline_budgets(budgets: list[float], reach: float, start: int) -> list[float]:
    """The baseline's budgets: ``budgets`` plus integers from ``start`` up to ``reach`` x the
    largest budget, about 25 % apart, so that the baseline's curve extends past every point of
    the other methods and their speedups are read on it, not bounded by its end."""
    if not (isinstance(reach, (int, float)) and reach >= 1) or isinstance(start, bool) or not isinstance(start, int) \
            or start < 1:
        raise ValueError(f"baseline_reach={reach!r} / baseline_from={start!r} are invalid: use a reach >= 1 "
                         "(1: the given budgets only) and an integer start >= 1 (LSD)")
    ladder, value, top = set(), start, reach * max(budgets)
    while reach > 1 and value <= top + 1e-9:
        ladder.add(float(value))
        value = max(value + 1, round(value * 1.25))
    return sorted(ladder | set(budgets))


def check_coverage(record: dict[str, Any] | None, dot_checkpoint: str, plans: list[tuple[float, str, DashSchedule]]) -> None:
    """Refuse (one line) Morse schedules whose gaps or step counts the Dot was not trained on."""
    coverage = (record or {}).get("coverage")
    if not coverage:
        return
    lo, hi = coverage["fine_steps"]
    for budget, method, schedule in plans:
        if method not in TRAINED_DOT_METHODS:
            continue
        if schedule.max_gap > coverage["max_gap"]:
            raise ValueError(
                f"Dot {dot_checkpoint} was trained for gaps up to {coverage['max_gap']} steps, but the pattern at "
                f"{budget:g} LSD has a gap of {schedule.max_gap} (n = {schedule.num_steps}): train it with "
                f"module.max_gap={schedule.max_gap} or use a denser jump_stride"
            )
        if not lo <= schedule.num_steps <= hi:
            raise ValueError(
                f"Dot {dot_checkpoint} was trained on {lo}..{hi} steps, but Morse at {budget:g} LSD runs "
                f"n = {schedule.num_steps}: train it with module.fine_steps=[{min(lo, schedule.num_steps)},"
                f"{max(hi, schedule.num_steps)}] or drop that budget"
            )


NOT_DECIDING: dict[str, tuple[str, ...]] = {
    "baseline": ("jump_stride", "dot", "dot_checkpoint", "speed_ratio", "method_settings"),
    "reuse": ("dot", "dot_checkpoint"),
    "oracle": ("dot", "dot_checkpoint"),
    "deepcache": ("jump_stride", "dot", "dot_checkpoint"),
    "stitch": ("jump_stride", "dot", "dot_checkpoint"),
}
"""What does not decide a method's points (keys of RESULT_KEYS, N, its method settings), left
out of its hash so that runs which differ only there share them: the baseline runs Dash alone
at every step; reuse and the oracle follow the jump pattern and N (hashed itself), not Dot's
weights (reuse also follows ``dot.base``, hashed for it where not "eps"); DeepCache and stitch
have their own patterns and N. Their records hold None there."""


def config_hash(cfg: DictConfig, speed_ratio: float, method_settings: dict[str, Any] | None = None,
                method: str = "morse", dot_weights: str | None = None, dash_weights: str | None = None) -> str:
    """Hash of the settings that decide ``method``'s points (not budgets, devices or paths,
    nor its :data:`NOT_DECIDING` entries); N is one of them, since it decides the schedules.
    ``method_settings``: what decides them beyond the config (a searched pattern's schedules;
    a rival's own settings, e.g. DeepCache's depth and interval, hashed for that method's
    points only). ``dot_weights`` / ``dash_weights``: the fingerprints of the loaded Dot's and
    Dash's weights, hashed in place of ``dot_checkpoint`` and ``model.pretrained`` (paths or hub
    ids), so that a model retrained or shipped into the same directory gets new points and a
    copy of it elsewhere (another checkout, another machine) shares them."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chosen = {key: resolved.get(key) for key in RESULT_KEYS}
    if dot_weights is not None:
        chosen["dot_checkpoint"] = dot_weights
    if dash_weights is not None:
        chosen["model"] = {**(chosen["model"] or {}), "pretrained": dash_weights}
    if method_settings is not None:
        chosen["method_settings"] = method_settings
    chosen["speed_ratio"] = round(float(speed_ratio), 6)
    for key in NOT_DECIDING.get(method, ()):
        chosen.pop(key, None)
    base = (resolved.get("dot") or {}).get("base", "eps")
    if method == "reuse" and base != "eps":  # reuse follows the Dot's base (eps points keep their hash)
        chosen["dot_base"] = base
    chosen["metric"] = deciding_metric(chosen["metric"] or {})
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def deciding_metric(metric: dict[str, Any]) -> dict[str, Any]:
    """The metric settings that decide a score: all but where and how verbosely it runs."""
    return {k: v for k, v in metric.items() if k not in ("cache_dir", "device", "verbose", "batch_size")}


def git_revision() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


PSNR_REPORT_FILES = ("speedup_psnr.json", "speedup_psnr.md", "psnr_vs_lsd.png")
OWN_FILES = ("results.jsonl", "speed_ratio.json", *(f"speed_ratio_{rival}.json" for rival in RIVALS),
             "speed_ratio_morse_deepcache_deepcache.json", "samples", "config.yaml", "speedup.json", "speedup.md",
             "fid_vs_lsd.png", *PSNR_REPORT_FILES)


def check_own_files(out_dir: Path) -> None:
    """Refuse (one line) a run directory whose output files are symbolic links: evaluate
    writes only inside its run directory, never through a link to somewhere else."""
    for name in OWN_FILES:
        path = out_dir / name
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symbolic link (to {os.readlink(path)}): evaluate writes only inside its run "
                "directory; remove the link or choose another hydra.run.dir"
            )


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write + fsync (a crash leaves at most a cut last line);
    never through a symbolic link."""
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def sample_contexts(dash: Dash, datamodule: Any, num_samples: int) -> list[Any] | None:
    """Context of sample i: held-out caption i (cycled), class i mod K, or None (unconditional)."""
    if dash.conditioning is None:
        return None
    if dash.conditioning == "text":
        if not hasattr(datamodule, "captions"):
            raise ValueError(f"Dash {dash.source} is text-conditioned but dataset {datamodule.name} has "
                             "no captions: use a captioned dataset (dataset=coco)")
        captions = datamodule.captions("heldout")
        return cycled(captions, num_samples)
    return cycled(range(int(dash.unet.config.num_class_embeds)), num_samples)


def cycled(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` entries, entry i being ``items[i mod len(items)]``."""
    return [items[i % len(items)] for i in range(count)]


def check_conditioning(dash: Dash, contexts: list[Any] | None, guidance_scale: float | None) -> None:
    """Build a first sample's conditioning now, so that a guidance scale for a Dash without
    prompts (or contexts it cannot take) fails before any sampling."""
    dash.condition(None if contexts is None else contexts[:1], guided=guidance_scale is not None)


def resolve_speed_ratio(
    cfg: DictConfig, dash: Dash, dot: nn.Module, out_dir: Path, contexts: list[Any] | None,
    given: Any = None, record_name: str = "speed_ratio.json",
) -> float:
    """N of ``dot`` (Dash latency / ``dot`` latency) from ``given`` (the config's value), from
    an earlier try of this run (``record_name`` in the run directory), or this machine's stored
    value.

    The stored value (:func:`morse_exp.speed.stored_speed_ratio`) is measured once per
    machine, models, batch and precision on a batch of ``batch_size`` samples with their
    conditioning (both guidance branches when guided), as sampling runs it;
    ``remeasure_speed=true`` measures it anew. The value used is recorded in the run
    directory (``speed_ratio.json``) and printed with where it came from.
    """
    if given is not None:
        return check_speed_ratio(given)  # checked with its key before any work
    record = out_dir / record_name
    if record.is_file():
        return float(json.loads(record.read_text())["speed_ratio"])
    guided = cfg.guidance_scale is not None
    batch = min(cfg.batch_size, len(contexts)) if contexts is not None else cfg.batch_size
    cond = dash.condition(contexts[:batch] if contexts is not None else None, guided=guided)
    rows = 2 * batch if guided else batch

    ratio, stored, measured = machine_speed_ratio(
        dash, dot, rows, cfg.device, cfg.precision, cfg.paths.cache_dir, cfg.speed_repeats, cond=cond,
        remeasure=cfg.remeasure_speed,
    )
    print(f"N = {ratio:.2f} ({'measured now and stored in' if measured else 'stored in'} {stored}; "
          "remeasure_speed=true measures it anew)")
    if _is_main():
        write_atomic(record, json.dumps({"speed_ratio": ratio, "source": str(stored), "measured_now": measured,
                                         "batch_size": cfg.batch_size, "device": cfg.device,
                                         "precision": cfg.precision}, indent=2).encode())
    return ratio


def rival_speed_ratio(
    cfg: DictConfig, rival: str, module: nn.Module, dash: Dash, out_dir: Path, contexts: list[Any] | None,
    dot_ratio: float,
) -> float:
    """N of a rival: ``<rival>_speed_ratio`` when given, else measured like Morse's; Morse
    stacked with DeepCache combines Morse's N (``dot_ratio``) with its DeepCache's."""
    given = cfg[f"{rival}_speed_ratio"]
    if given is None and isinstance(module, MorseDeepCache):
        part = resolve_speed_ratio(cfg, dash, module.deepcache, out_dir, contexts,
                                   record_name=f"speed_ratio_{rival}_deepcache.json")
        return module.speed_ratio(dot_ratio, part)
    return resolve_speed_ratio(cfg, dash, module, out_dir, contexts, given=given, record_name=f"speed_ratio_{rival}.json")


def stacked_stride(jump: Any) -> int:
    """Morse's stride K, the one pattern Morse stacked with DeepCache builds on; one-line
    ValueError for any other jump pattern."""
    if not isinstance(jump, JumpPattern) or jump.positions is not None or jump.dot_share is not None:
        raise ValueError("method morse_deepcache stacks DeepCache on a fixed stride: use jump_stride=stride<K> "
                         "(or jump_stride.stride=K)")
    return jump.stride


def check_speed_ratio(value: Any, key: str = "speed_ratio") -> float:
    """``value`` of config ``key`` as a float; one-line ValueError unless it is a finite number > 0."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"{key}={value!r} is invalid: give N, the Dash/Dot latency ratio, as a number > 0 "
                         "(or null to use this machine's stored value)")
    return ratio


def fidelity_enabled(cfg: DictConfig) -> bool:
    """Whether points get PSNR/SSIM against every-step Dash ("auto": deterministic samplers)."""
    if cfg.fidelity.enabled == "auto":
        return cfg.scheduler.name not in STOCHASTIC_SCHEDULERS
    if cfg.fidelity.enabled:
        check_deterministic(cfg.scheduler.name)
    return bool(cfg.fidelity.enabled)


def check_dot_record(cfg: DictConfig) -> dict[str, Any] | None:
    """The trained Dot's record, refused (one line) when made for other schedulers (its
    ``scheduler`` and ``extra_schedulers``) or other scheduler options (timestep spacing...)."""
    if not cfg.dot_checkpoint:
        return None
    record = read_record(cfg.dot_checkpoint)
    samplers = {record.get("scheduler"): record.get("scheduler_options"), **(record.get("extra_schedulers") or {})}
    if cfg.scheduler.name not in samplers:
        names = " / ".join(repr(name) for name in samplers)
        raise ValueError(
            f"Dot {cfg.dot_checkpoint} was trained for scheduler {names}, "
            f"this run samples with {cfg.scheduler.name!r}: train one for it or set scheduler="
            f"{record.get('scheduler')}"
        )
    name = cfg.scheduler.name
    options = with_step_defaults(name, scheduler_options(cfg.scheduler))
    trained = None if samplers[name] is None else with_step_defaults(name, samplers[name])
    if trained is not None and trained != options:
        raise ValueError(
            f"Dot {cfg.dot_checkpoint} was trained for scheduler options {trained}, this run samples "
            f"with {options}: train one for them or set the scheduler's options as trained"
        )
    return record


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sweep every (budget, method) point not yet in results.jsonl, then write the report.

    Every check that can fail runs before the first sample is drawn.
    """
    check_run_settings(cfg)
    check_own_files(Path(cfg.paths.output_dir))
    budgets = check_budgets(cfg.lsd_budgets)
    grid_budgets = budgets if cfg.grid_budgets is None else list(cfg.grid_budgets)
    methods = check_methods(cfg.methods, cfg.dot_checkpoint)
    for key in ("speed_ratio", *(f"{rival}_speed_ratio" for rival in RIVALS)):
        if cfg.get(key) is not None:
            check_speed_ratio(cfg[key], key)
    jump = hydra.utils.instantiate(cfg.jump_stride)
    stride = stacked_stride(jump) if "morse_deepcache" in methods else None
    dot_record = check_dot_record(cfg)
    point_sources = check_point_sources(cfg.get("copy_points_from") or [])
    with_fidelity = fidelity_enabled(cfg)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.check_available()
    metric = hydra.utils.instantiate(cfg.metric)(datamodule=datamodule)
    metric.check()
    clip_score = hydra.utils.instantiate(cfg.clip_score) if cfg.get("clip_score") else None
    if clip_score is not None:
        clip_score.check()
    dash = hydra.utils.instantiate(cfg.model).to(cfg.device)
    contexts = sample_contexts(dash, datamodule, metric.num_samples)
    check_conditioning(dash, contexts, cfg.guidance_scale)
    if clip_score is not None and dash.conditioning != "text":
        raise ValueError(f"clip_score is set but Dash {dash.source} is not text-conditioned: "
                         "drop it with ~clip_score")
    if metric.extractor is not None:  # decoded sample shape vs the extractor, before sampling
        decoded = dash.decode(torch.zeros(1, *dash.sample_shape, device=cfg.device))
        check_image_shape(tuple(decoded.shape[1:]), metric.extractor, f"samples of {dash.source}")
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).to(cfg.device).eval()
    if dot_record:
        load_dot_weights(dot, cfg.dot_checkpoint)
    dots = method_dots(dash, dot)
    rivals = [method for method in methods if method in RIVALS]
    for rival in rivals:
        build = hydra.utils.instantiate(cfg[rival])
        built = build(dash=dash, dot=dot, stride=stride) if rival == "morse_deepcache" else build(dash=dash)
        dots[rival] = built.to(cfg.device).eval()

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speed_ratio = resolve_speed_ratio(cfg, dash, dot, out_dir, contexts, given=cfg.speed_ratio)
    make_scheduler = hydra.utils.instantiate(cfg.scheduler)
    # per method: its jump pattern, N and result hash (a rival has its own)
    pattern_of = dict.fromkeys(methods, jump)
    ratio_of = dict.fromkeys(methods, speed_ratio)
    dot_weights = dot_fingerprint(dot) if dot_record else None
    dash_weights = dash_fingerprint(dash)
    hash_of = {method: config_hash(cfg, speed_ratio, getattr(jump, "settings", None), method, dot_weights, dash_weights)
               for method in methods}
    settings_of = {rival: dots[rival].config for rival in rivals}
    for rival in rivals:
        pattern_of[rival] = dots[rival].pattern
        ratio_of[rival] = rival_speed_ratio(cfg, rival, dots[rival], dash, out_dir, contexts, speed_ratio)
        hash_of[rival] = config_hash(cfg, ratio_of[rival], settings_of[rival], rival, dot_weights, dash_weights)

    def draw(schedule: DashSchedule, label: str, method: str, sweep: Progress) -> Any:
        """Samples of ``schedule`` by ``method``; ``sweep`` counts its LSD x samples step by step."""
        lsd, drawn = schedule.lsd(ratio_of[method]), [0.0]

        def count(samples: float) -> None:
            drawn[0] += samples
            sweep.update(lsd * samples, f"{label}: {drawn[0]:.0f}/{metric.num_samples} samples")

        return generate(
            dash, lambda: make_scheduler(base_config=dash.scheduler_config), schedule, cfg.seed,
            metric.num_samples, cfg.batch_size, cfg.device, dot=dots.get(method),
            precision=cfg.precision, progress=label, contexts=contexts, guidance_scale=cfg.guidance_scale,
            on_progress=count,
        )

    every_budget = {"baseline": baseline_budgets(budgets, cfg.baseline_reach, cfg.baseline_from)}
    plans = [(budget, method, schedule_for(method, budget, pattern_of[method], ratio_of[method]))
             for method in methods for budget in every_budget.get(method, budgets)]
    # as the trained Dot sees them: a stack with DeepCache anchors Dot every `stride` steps
    check_coverage(dot_record, cfg.dot_checkpoint, [
        (budget, method, dots[method].dot_schedule(schedule) if isinstance(dots.get(method), MorseDeepCache) else schedule)
        for budget, method, schedule in plans])
    planned = {(method, budget) for budget, method, _ in plans}  # not points of an earlier, wider sweep
    results_path = out_dir / "results.jsonl"
    done = {(r["method"], r["lsd_budget"]) for r in read_finished(results_path)
            if r.get("config_hash") == hash_of.get(r["method"])}
    copies, not_copied = points_to_copy(point_sources, hash_of, planned - done)
    if copies and _is_main():
        for record in copies:
            append_record(results_path, record)
        print(f"copied {len(copies)} finished points from {', '.join(map(str, point_sources))}")
    if not_copied and _is_main():
        print(f"copy_points_from: {', '.join(f'{method} @{budget:g}' for method, budget in sorted(not_copied))} "
              "found with other settings (Dash or Dot weights, sampler, N, samples, metric, or a run older than the "
              "settings hash): sampled again")
    done |= {(r["method"], r["lsd_budget"]) for r in copies}
    todo = sorted((plan for plan in plans if (plan[1], plan[0]) not in done), key=lambda plan: plan[0])
    # PSNR's reference: every-step Dash, by default at 1.5 x the largest budget of this run's plan,
    # so points of runs with other budgets (copied, or resumed after a budget change) may carry
    # a PSNR against another reference: each point records its reference's steps
    reference, reference_steps = None, None
    if with_fidelity:
        reference_steps = cfg.fidelity.reference_steps or math.ceil(1.5 * max(b for b, _, _ in plans))
    reference_schedule = DashSchedule.every_step(reference_steps) if reference_steps is not None and todo else None
    reference_lsd = reference_schedule.lsd(ratio_of["baseline"]) if reference_schedule is not None else 0.0
    sweep = Progress("evaluate sweep (LSD x samples)", metric.num_samples * (
        reference_lsd + sum(schedule.lsd(ratio_of[method]) for _, method, schedule in todo)))
    if reference_schedule is not None:
        reference = draw(reference_schedule, f"fidelity reference ({reference_steps} steps)", "baseline", sweep).images
    logger = instantiate_logger(cfg) if _is_main() else False
    common = {
        "model": str(dash.source), "dataset": datamodule.name, "scheduler": cfg.scheduler.name,
        "jump_stride": OmegaConf.to_container(cfg.jump_stride, resolve=True),
        "seed": cfg.seed, "device": cfg.device, "precision": cfg.precision, "git_revision": git_revision(),
        "dot_checkpoint": cfg.dot_checkpoint, "guidance_scale": cfg.guidance_scale,
    }
    for budget, method, schedule in todo:
        generated = draw(schedule, f"{method} @ {budget:g} LSD", method, sweep)
        lsd = schedule.lsd(ratio_of[method])
        if not _is_main():
            continue
        scores = metric.compute(generated.images)
        scores["fid_bootstrap"] = metric.fid_bootstrap(generated.images, cfg.bootstrap.resamples, cfg.bootstrap.seed)
        if clip_score is not None:
            scores["clip_score"] = clip_score(generated.images, contexts)
        if reference is not None:
            scores["psnr"] = psnr(generated.images, reference)
            scores["ssim"] = ssim(generated.images, reference)
            scores["psnr_reference_steps"] = reference_steps
        record = {
            **common, "method": method, "speed_ratio": ratio_of[method], "config_hash": hash_of[method],
            **({"method_settings": settings_of[method], "jump_stride": None} if method in settings_of else {}),
            "lsd_budget": budget, "lsd": lsd,
            "num_steps": schedule.num_steps, "dash_calls": schedule.dash_calls,
            "dot_calls": schedule.dot_calls,
            # the oracle's Dot steps are Dash calls: only its LSD cost is meaningful
            "seconds": None if method == "oracle" else generated.seconds,
            "decode_seconds": generated.decode_seconds, "seed_range": [0, metric.num_samples],
            **scores,
        }
        # what did not decide this point is not recorded with it (it may be another run's)
        record.update({key: None for key in NOT_DECIDING.get(method, ()) if key in record})
        append_record(results_path, record)
        clip = f" CLIP {scores['clip_score']:.2f}" if "clip_score" in scores else ""
        print(f"{method:>8} @ {budget:5g} LSD: n={schedule.num_steps:3d} FID {scores['fid']:8.3f}{clip} "
              f"({generated.seconds:.1f} s)")
        if budget in grid_budgets:
            save_grid(generated.images[:64], out_dir / "samples" / f"{method}_lsd{budget:g}.png", nrow=8,
                      caption=f"{method} @ {budget:g} LSD (n = {schedule.num_steps}, {schedule.dash_calls} Dash), "
                              f"FID {scores['fid']:.3g}")
        if logger:
            logger.log_metrics({f"{method}/fid": scores["fid"], f"{method}/lsd": record["lsd"]},
                               step=round(budget * 100))
    sweep.close()
    if not _is_main():
        return {}, {}
    records = [r for r in read_results(results_path)
               if r.get("config_hash") == hash_of.get(r["method"]) and (r["method"], r["lsd_budget"]) in planned]
    paths = write_report(records, out_dir)
    if not (with_fidelity and write_psnr_report(records, reference_steps, out_dir)):
        remove_psnr_report(out_dir)
    write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
    if logger:
        _log_table(logger, records, Path(paths.plot))
    print(Path(paths.markdown).read_text())
    print(f"Report written to {out_dir}: {Path(paths.markdown).name}, {Path(paths.json).name}, "
          f"{Path(paths.plot).name}, results.jsonl, samples/")
    summary = json.loads(Path(paths.json).read_text())
    return summary, {"records": records, "dash": dash, "dot": dot}


def write_psnr_report(records: list[dict[str, Any]], reference_steps: int, out_dir: Path) -> bool:
    """``speedup_psnr.*`` and ``psnr_vs_lsd.png`` from the points whose PSNR was measured
    against this run's reference (every-step Dash at ``reference_steps``); the others (copied
    from, or resumed after, a run with other budgets, or recorded before points named their
    reference) are left out, with one line saying how many, and no report without a baseline.
    Returns whether the report was written."""
    comparable = [r for r in records if r.get("psnr_reference_steps") == reference_steps]
    if len(comparable) < len(records):
        print(f"PSNR: {len(records) - len(comparable)} of {len(records)} points left out, their PSNR was measured "
              f"against another reference than every-step Dash at {reference_steps} steps (or none recorded)")
    if not any(r["method"] == "baseline" for r in comparable):
        print("PSNR report not written: no baseline point measured against this run's reference")
        return False
    write_report(comparable, out_dir, metric="psnr", lower_is_better=False)
    return True


def remove_psnr_report(out_dir: Path) -> None:
    """Remove a PSNR report an earlier run left in ``out_dir``, so that a run that writes none
    (fidelity off, or no comparable baseline) leaves no report that reads as its own."""
    for name in PSNR_REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _log_table(logger: Any, records: list[dict[str, Any]], plot: Path) -> None:
    columns = ["method", "lsd_budget", "lsd", "fid", "kid", "clip_score", "seconds", "num_steps", "dash_calls", "dot_calls"]
    if hasattr(logger, "log_table"):  # W&B: the table and the curves as an image
        logger.log_table(key="results", columns=columns, data=[[r.get(c) for c in columns] for r in records])
        logger.log_image(key="fid_vs_lsd", images=[str(plot)])
    logger.save()


def check_point_sources(sources: Sequence[str]) -> list[Path]:
    """The results.jsonl files of ``copy_points_from`` (a run directory stands for its
    results.jsonl); one-line ValueError for one that is missing, before any work."""
    paths = []
    for source in sources:
        path = Path(source) / "results.jsonl" if Path(source).is_dir() else Path(source)
        if not path.is_file():
            raise ValueError(f"copy_points_from: {source} is neither a results.jsonl file nor a run directory holding "
                             "one; name an earlier evaluate run's")
        paths.append(path)
    return paths


def points_to_copy(
    sources: Sequence[Path], hash_of: dict[str, str], wanted: set[tuple[str, float]]
) -> tuple[list[dict[str, Any]], set[tuple[str, float]]]:
    """The finished points of other runs' results files that this run wants ((method, budget)
    in ``wanted``, with this run's settings hash for the method), each with its source
    (``copied_from``: the run that sampled it, kept through copies of copies, since its
    seconds were measured there); the first source holding a point gives it. Also the wanted
    points that the sources hold only under other settings (another hash), which are sampled again."""
    copies: dict[tuple[str, float], dict[str, Any]] = {}
    elsewhere: set[tuple[str, float]] = set()
    for source in sources:
        for record in read_results(source):
            point = (record.get("method"), record.get("lsd_budget"))
            if point not in wanted or point in copies:
                continue
            if record.get("config_hash") == hash_of.get(point[0]):
                copies[point] = {**record, "copied_from": record.get("copied_from", str(source))}
            else:
                elsewhere.add(point)
    return list(copies.values()), elsewhere - copies.keys()


def read_finished(path: Path) -> list[dict[str, Any]]:
    """Records of finished points, checked before any sampling.

    A last line without its newline is an interrupted append: completed with a newline if it
    parses, cut off if it does not. Any other line that is not a JSON object is a one-line
    ValueError naming the file and line (nothing is appended after it).
    """
    if not path.is_file():
        return []
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        tail = content[content.rfind(b"\n") + 1 :]
        try:
            complete = isinstance(json.loads(tail), dict)
        except ValueError:
            complete = False
        with path.open("r+b") as handle:
            if complete:
                handle.seek(0, os.SEEK_END)
                handle.write(b"\n")
            else:
                handle.truncate(len(content) - len(tail))
    return read_results(path, allow_cut_last=False)


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def rank_device(device: str, local_rank: int) -> str:
    """Each process of a multi-GPU launch samples on its own GPU: "cuda" -> "cuda:<local rank>"."""
    if device == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    return device


@entry_point("evaluate")
def main(cfg: DictConfig) -> Any:
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        cfg.device = rank_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    return run(cfg)


if __name__ == "__main__":
    main()
