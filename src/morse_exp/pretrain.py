"""Train a Dash from scratch: ``python -m morse_exp.pretrain [dataset=... architecture=...]``.

Writes ``<run dir>/dash/`` (safetensors, config, scheduler config, provenance.json) and a
grid of its samples (``samples.png``, DDIM 50 steps with eps re-derived from the clipped x0). Lightning checkpoints (weights, EMA,
optimiser) go to ``<run dir>/checkpoints/`` every ``checkpoint.every_n_train_steps`` steps;
resume a stopped run with ``hydra.run.dir=<its run dir> ckpt_path=last``. Without its
checkpoints, ``init_from=<a Dash directory>`` continues from a saved Dash's (EMA) weights
with a fresh optimiser and warm-up for ``trainer.max_steps`` more steps; the checkpoints and
the provenance count that Dash's steps too. The provenance's ``history`` lists every run that
trained the Dash (its command and first step), across resumes and ``init_from``.

With ``autoencoder=/path/to/autoencoder`` (a diffusers AutoencoderKL or VQModel directory,
or a pipeline directory with vae/ or vqvae/) it trains a latent Dash on the autoencoder's
scaled latents and writes a pipeline directory (model_index.json, unet/, scheduler/, vae/ or
vqvae/); the sample grid is decoded through the autoencoder.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from morse_exp.cli import entry_point, instantiate_trainer, resolve_ckpt_path
from morse_exp.images import save_grid
from morse_exp.pretraining import (
    check_sample_shape,
    load_autoencoder,
    load_init_weights,
    save_dash_dir,
    training_history,
)
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import make_scheduler
from morse_exp.seeding import sample_generators


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, save the EMA Dash atomically, draw a sample grid; returns (metrics, objects)."""
    L.seed_everything(cfg.seed, workers=True)
    anneal = cfg.pretraining.get("anneal_steps", 0)
    if anneal > cfg.trainer.max_steps:
        raise ValueError(f"pretraining.anneal_steps={anneal} is more than trainer.max_steps={cfg.trainer.max_steps}: "
                         "the decay must fit in the run; use anneal_steps <= max_steps")
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.checkpoint.dirpath)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.check_available()
    autoencoder = load_autoencoder(cfg.autoencoder) if cfg.get("autoencoder") else None
    unet = hydra.utils.instantiate(cfg.architecture)
    init_steps = load_init_weights(unet, cfg.init_from) if cfg.get("init_from") else 0
    command = "python -m morse_exp.pretrain " + " ".join(sys.argv[1:])
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path else None
    noise_scheduler = hydra.utils.instantiate(cfg.noise_scheduler)
    module = hydra.utils.instantiate(cfg.pretraining)(
        unet=unet, noise_scheduler=noise_scheduler, autoencoder=autoencoder, init_steps=init_steps,
        history=training_history(command, checkpoint, cfg.get("init_from"), init_steps),
    )
    check_sample_shape(module.dash, datamodule.image_shape)
    trainer = instantiate_trainer(cfg, "pretrain")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if not trainer.is_global_zero:
        return metrics, {}
    dash = module.ema_dash().cpu()
    provenance = {
        "command": command,
        "seed": cfg.seed,
        "steps": module.init_steps + trainer.global_step,
        "history": module.history,
        "init_from": cfg.get("init_from"),
        "final_train_loss": metrics.get("train/loss"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    save_dir = save_dash_dir(dash.unet, noise_scheduler, cfg.save_dir, provenance, dash.autoencoder)
    dash.source = str(save_dir)
    samples, _ = sample(
        dash, make_scheduler("ddim", dash.scheduler_config, use_clipped_model_output=True), DashSchedule.every_step(50),
        sample_generators(cfg.seed, range(cfg.grid_samples)),
    )
    save_grid(dash.decode(samples), save_dir.parent / "samples.png", nrow=10)
    print(f"Dash saved to {save_dir}; sample grid: {save_dir.parent / 'samples.png'}")
    return metrics, {"dash": dash, "trainer": trainer}


@entry_point("pretrain")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
