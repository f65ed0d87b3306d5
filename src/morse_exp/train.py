"""Train Dot against a frozen Dash: ``python -m morse_exp.train [model=... jump_stride=...]``.

Writes into the Hydra run directory: Lightning checkpoints (``checkpoints/last.ckpt``, Dot
weights + optimiser state + resolved config, no copy of Dash), the final Dot as
``dot/dot.safetensors`` + ``dot/dot.json``, and the logger's metrics. Resume an interrupted
run with ``hydra.run.dir=<its run dir> ckpt_path=last``. Without its checkpoints,
``init_from=<a saved Dot directory>`` continues from that Dot's weights (same Dash and Dot
settings, checked) with a fresh optimiser and learning-rate schedule; its record counts the
earlier steps too, and a resumed run must name the same ``init_from`` it started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from morse_exp.checkpoints import load_dot_weights, save_dot
from morse_exp.cli import CONFIG_PATH, entry_point, instantiate_trainer, resolve_ckpt_path
from morse_exp.progress import StepProgress
from morse_exp.schedule import JumpPattern
from morse_exp.schedulers import scheduler_options
from morse_exp.speed import machine_speed_ratio


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate every object of a train config; cheap checks first, Dash loading last."""
    jump = hydra.utils.instantiate(cfg.jump_stride)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.check_available()
    dash = hydra.utils.instantiate(cfg.model)
    check_images_fit(dash, datamodule)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash)
    module = hydra.utils.instantiate(cfg.module)(
        dash=dash,
        dot=dot,
        scheduler=[hydra.utils.instantiate(c) for c in (cfg.scheduler, *extra_scheduler_configs(cfg).values())],
        max_gap=cfg.module.max_gap or jump.max_gap or widest_gap(cfg, jump, dash, dot),
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    stretches = hydra.utils.instantiate(cfg.stretches)(images=datamodule, module=module) if cfg.get("stretches") else None
    return {"datamodule": datamodule, "dash": dash, "dot": dot, "module": module, "stretches": stretches}


def extra_scheduler_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """name -> scheduler config (``conf/scheduler/<name>.yaml``) of each of ``extra_schedulers``,
    the samplers a Dot trains for besides ``scheduler``; one-line ValueError for an unknown or
    repeated name."""
    folder = Path(CONFIG_PATH) / "scheduler"
    known = sorted(path.stem for path in folder.glob("*.yaml"))
    names = list(cfg.get("extra_schedulers") or [])
    for name in names:
        if name not in known or name == cfg.scheduler.name or names.count(name) > 1:
            raise ValueError(f"extra_schedulers={names} is invalid: {name!r} is "
                             f"{'not a scheduler' if name not in known else 'listed twice'}; choose other names "
                             f"than scheduler={cfg.scheduler.name} from {', '.join(known)}")
    return {name: OmegaConf.load(folder / f"{name}.yaml") for name in names}


def check_images_fit(dash: Any, datamodule: Any) -> None:
    """One-line ValueError, before training, unless the dataset's images (encoded, for a latent
    Dash) have the shape Dash samples in."""
    shape = tuple(datamodule.image_shape)
    param = next(dash.parameters())
    try:
        encoded = tuple(dash.encode(torch.zeros(1, *shape, dtype=param.dtype, device=param.device)).shape[1:])
    except RuntimeError:
        encoded = None
    if encoded != tuple(dash.sample_shape):
        latent = " (through its autoencoder)" if dash.autoencoder is not None else ""
        raise ValueError(
            f"the {datamodule.name} images have shape {shape}{latent}, but Dash {dash.source} samples in shape "
            f"{tuple(dash.sample_shape)}: use a dataset of that size (e.g. dataset.size=...) or another model"
        )


def check_steps(cfg: DictConfig, datamodule: Any) -> None:
    """One-line ValueError when training would take no step (and save an untrained Dot) or
    asks for a GPU this machine does not have."""
    if str(cfg.trainer.accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.accelerator={cfg.trainer.accelerator} is invalid here: this machine has no "
                         "CUDA GPU; use trainer=cpu")
    if cfg.trainer.max_steps == 0:
        raise ValueError("trainer.max_steps=0 trains nothing: use a positive number of steps")
    images, batch = len(datamodule.split("train")), datamodule.batch_size
    if images < batch:
        raise ValueError(
            f"dataset.batch_size={batch} is larger than the {images} training images: no full batch fits "
            f"(the last partial batch is dropped), so no step would run; use dataset.batch_size<={images}"
        )


def widest_gap(cfg: DictConfig, jump: JumpPattern, dash: Any, dot: Any) -> int:
    """The largest gap of ``jump``'s schedules at the evaluation budgets ``lsd_budgets``, with
    the N evaluation will use (a ``dot_share`` pattern's gaps follow from the budget and N):
    ``speed_ratio``, or this machine's stored N on ``eval_device`` in ``eval_precision`` at
    ``eval_batch_size`` samples per call, the same stored value evaluate reads there."""
    speed_ratio = cfg.speed_ratio
    if speed_ratio is None:
        device = str(cfg.eval_device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"eval_device={device} is invalid here: this machine has no CUDA GPU to measure N on; "
                             "use eval_device=cpu or give the N measured there as speed_ratio=...")
        try:
            speed_ratio = machine_speed_ratio(
                dash.to(device), dot.to(device), cfg.eval_batch_size, device, str(cfg.eval_precision), cfg.paths.cache_dir
            )[0]
        finally:
            dash.to("cpu"), dot.to("cpu")
    return max(jump.fit_budget(float(budget), speed_ratio).max_gap for budget in cfg.lsd_budgets)


def check_resumed_init(ckpt_path: str | None, init_from: str | None) -> None:
    """A resumed run keeps the ``init_from`` it started with: its record counts that Dot's steps.

    Raises:
        ValueError: if the checkpoint's run started from another Dot (or from none) than
            ``init_from``, e.g. the run that made the very Dot now given as ``init_from``.
    """
    if ckpt_path is None:
        return
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    started = checkpoint.get("morse", {}).get("run_config", {}).get("init_from")
    if started != init_from:
        raise ValueError(
            f"init_from={init_from} does not match ckpt_path={ckpt_path}: that run started from init_from={started}; "
            f"resume it with init_from={started}, or continue from {init_from} in a new run directory"
        )


def run(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit Dot; save its weights. Returns (final metrics, built objects)."""
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.checkpoint.dirpath)
    check_resumed_init(ckpt_path, cfg.get("init_from"))
    objects = build(cfg)
    check_steps(cfg, objects["datamodule"])
    # a Dot of another base (dot.base) is a starting point too
    init_steps = int(load_dot_weights(objects["dot"], cfg.init_from, same_base=False).get("steps", 0)) if cfg.get("init_from") else 0
    trainer = instantiate_trainer(cfg, "train")
    # cached Dash stretches (stretches=cached) or the images themselves (live rollouts)
    trainer.fit(objects["module"], datamodule=objects["stretches"] or objects["datamodule"], ckpt_path=ckpt_path)
    clock = next(callback for callback in trainer.callbacks if isinstance(callback, StepProgress))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        record = {
            "scheduler": cfg.scheduler.name,
            "scheduler_options": scheduler_options(cfg.scheduler),
            # the other samplers this Dot was trained for (name -> options)
            "extra_schedulers": {name: scheduler_options(c) for name, c in extra_scheduler_configs(cfg).items()},
            "jump_stride": OmegaConf.to_container(cfg.jump_stride, resolve=True),
            "coverage": objects["module"].coverage,
            # with init_from, the steps of the Dot it continued from too
            "steps": init_steps + trainer.global_step,
            "init_from": cfg.get("init_from"),
            # wall-clock seconds of the fit (cache building and validation included), the
            # runs it resumed included; not those of the Dot of init_from
            "fit_seconds": clock.run_seconds(),
            "metrics": metrics,
            "run_config": OmegaConf.to_container(cfg, resolve=True),
        }
        dot_dir = save_dot(objects["dot"], Path(cfg.paths.output_dir) / "dot", record)
        print(f"Dot saved to {dot_dir}")
    return metrics, {**objects, "trainer": trainer}


@entry_point("train")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    main()
