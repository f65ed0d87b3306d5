"""Draw samples with one method at one LSD budget: ``python -m morse_exp.sample``.

The same loop, schedules, seeds and contexts as ``evaluate``: sample i of a run here is
sample i of the evaluate point with the same settings. Writes into the Hydra run directory
``grid.png`` (the first 64 samples), ``samples.npz`` (all samples as uint8 (N, H, W, C) under
``arr_0``, the layout external FID tools read), ``images/<i>.png`` (with ``save_pngs``) and
``sampling.json`` (method, schedule, cost in LSD and seconds, N, seed range).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from morse_exp.atomic import write_atomic
from morse_exp.checkpoints import load_dot_weights
from morse_exp.cli import entry_point
from morse_exp.dash import Dash
from morse_exp.dot import method_dots
from morse_exp.evaluate import (
    METHODS,
    RIVALS,
    check_budgets,
    check_conditioning,
    check_dot_record,
    check_methods,
    check_run_settings,
    cycled,
    resolve_speed_ratio,
    sample_contexts,
    schedule_for,
)
from morse_exp.generation import generate
from morse_exp.images import save_grid
from morse_exp.metrics import to_uint8
from morse_exp.schedule import MAX_LSD_BUDGET

SAMPLE_METHODS = tuple(method for method in METHODS if method not in RIVALS)


def prompt_contexts(cfg: DictConfig, dash: Dash) -> list[Any] | None:
    """Context of sample i: ``prompts[i]`` (cycled) when given, else as evaluate draws it."""
    if cfg.prompts and dash.conditioning == "text":
        return cycled(list(cfg.prompts), cfg.num_samples)
    if dash.conditioning is None:
        return None
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.check_available()
    return sample_contexts(dash, datamodule, cfg.num_samples)


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate ``num_samples`` samples of ``method`` at ``lsd_budget`` and save them."""
    check_run_settings(cfg)
    try:
        (budget,) = check_budgets([cfg.lsd_budget])
    except ValueError:
        raise ValueError(f"lsd_budget={cfg.lsd_budget!r} is invalid: give one budget in [1, {MAX_LSD_BUDGET}] LSD") from None
    if cfg.method not in SAMPLE_METHODS:
        raise ValueError(f"method={cfg.method!r} is invalid: choose one of {', '.join(SAMPLE_METHODS)} "
                         "(the rivals run in evaluate)")
    (method,) = check_methods([cfg.method], cfg.dot_checkpoint)
    jump = hydra.utils.instantiate(cfg.jump_stride)
    dot_record = check_dot_record(cfg) if method == "morse" else None
    dash = hydra.utils.instantiate(cfg.model).to(cfg.device)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).to(cfg.device).eval()
    if dot_record:
        load_dot_weights(dot, cfg.dot_checkpoint)
    contexts = prompt_contexts(cfg, dash)
    check_conditioning(dash, contexts, cfg.guidance_scale)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speed_ratio = None if method == "baseline" else resolve_speed_ratio(cfg, dash, dot, out_dir, contexts)
    schedule = schedule_for(method, budget, jump, speed_ratio or 1.0)
    make_scheduler = hydra.utils.instantiate(cfg.scheduler)
    generated = generate(
        dash, lambda: make_scheduler(base_config=dash.scheduler_config), schedule, cfg.seed,
        cfg.num_samples, cfg.batch_size, cfg.device, dot=method_dots(dash, dot).get(method),
        precision=cfg.precision, progress=f"{method} @ {budget:g} LSD", contexts=contexts,
        guidance_scale=cfg.guidance_scale,
    )
    pixels = to_uint8(generated.images).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    npz = io.BytesIO()
    np.savez_compressed(npz, pixels)  # arr_0
    write_atomic(out_dir / "samples.npz", npz.getvalue())
    save_grid(generated.images[:64], out_dir / "grid.png", nrow=8)
    if cfg.save_pngs:
        (out_dir / "images").mkdir(exist_ok=True)
        for index, image in enumerate(pixels):
            Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
                out_dir / "images" / f"{index:06d}.png")
    summary = {
        "method": method, "lsd_budget": budget, "num_steps": schedule.num_steps,
        "dash_calls": schedule.dash_calls, "dot_calls": schedule.dot_calls,
        "lsd": schedule.lsd(speed_ratio) if speed_ratio else float(schedule.dash_calls),
        "speed_ratio": speed_ratio, "seconds": generated.seconds, "decode_seconds": generated.decode_seconds,
        "seed": cfg.seed, "seed_range": [0, cfg.num_samples], "model": str(dash.source),
        "scheduler": cfg.scheduler.name, "dot_checkpoint": cfg.dot_checkpoint,
        "guidance_scale": cfg.guidance_scale, "prompts": contexts if dash.conditioning == "text" else None,
    }
    (out_dir / "sampling.json").write_text(json.dumps(summary, indent=2, default=str))
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    print(f"{cfg.num_samples} samples of {method} at {budget:g} LSD (n={schedule.num_steps}, "
          f"{generated.seconds:.1f} s) in {out_dir}")
    return summary, {"images": generated.images, "dash": dash, "dot": dot}


@entry_point("sample")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    main()
