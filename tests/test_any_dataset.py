"""A user's own data, offline: image folder -> fit_extractor -> train -> evaluate, and extractor agreement."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers import make_crop_folder, tiny_unet
from scipy.stats import spearmanr

from morse_exp import evaluate, fit_extractor, train
from morse_exp.data import DigitsDataModule
from morse_exp.metrics import QualityMetrics
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import make_scheduler
from morse_exp.seeding import sample_generators

TINY_DOT = ["dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2", "dot.num_down=1"]


def test_unlabelled_rgb_folder_runs_end_to_end(tmp_path, run_config):
    folder = make_crop_folder(tmp_path / "crops")
    dash_dir = tmp_path / "dash"
    tiny_unet(sample_size=16, channels=3, seed=2).save_pretrained(dash_dir, safe_serialization=True)
    DDPMScheduler().save_config(dash_dir)
    data = ["dataset=image_folder", f"dataset.root={folder}", "dataset.size=16", "dataset.batch_size=32",
            "dataset.num_workers=0"]

    extractors = tmp_path / "extractors"
    fit_extractor.run(run_config("fit_extractor", [
        *data, "name=crops_ae", "kind=auto", "steps=4", "code_dim=16", "width=8", f"save_dir={extractors}",
    ], tmp_path / "fit"))
    assert json.loads((extractors / "crops_ae" / "extractor.json").read_text())["kind"] == "autoencoder"

    common = [*data, f"model.pretrained={dash_dir}", *TINY_DOT, "logger=none"]
    train.run(run_config("train", [*common, "trainer.max_steps=3", "trainer.val_check_interval=3",
                                   "+trainer.limit_val_batches=1", "module.fine_steps=[2,8]"], tmp_path / "train"))
    summary, _ = evaluate.run(run_config("evaluate", [
        *common, f"dot_checkpoint={tmp_path / 'train' / 'dot'}", "metric.extractor=crops_ae",
        f"metric.extractors_dir={extractors}", f"paths.cache_dir={tmp_path / 'cache'}",
        "metric.num_samples=64", "batch_size=32", "speed_ratio=3.0", "lsd_budgets=[2,3]", "grid_budgets=[3]", "baseline_reach=1",
    ], tmp_path / "evaluate"))
    records = [json.loads(line) for line in (tmp_path / "evaluate" / "results.jsonl").read_text().splitlines()]
    # baseline, reuse, morse and oracle at 2 and 3 LSD
    assert len(records) == 8 and {r["extractor"] for r in records} == {"crops_ae"}
    assert summary["extractor"] == "crops_ae" and summary["dataset"] == "crops"
    assert all(np.isfinite(r["fid"]) and np.isfinite(r["psnr"]) for r in records)


@pytest.mark.slow
def test_self_supervised_fid_ranks_budgets_like_the_classifier(tmp_path, run_config):
    """~3 CPU minutes: on the shipped Dash the baseline's FID falls as its LSD grows; an
    autoencoder extractor fitted on digits orders those budgets as the shipped classifier does,
    and both put noise far behind real held-out digits."""
    extractors = tmp_path / "extractors"
    fit_extractor.run(run_config("fit_extractor", [
        "name=digits_ae", "kind=autoencoder", "steps=1500", f"save_dir={extractors}",
    ], tmp_path / "fit"))
    digits = DigitsDataModule()
    from morse_exp import asset_path
    from morse_exp.loading import load_dash

    dash = load_dash(asset_path("dash_digits"))
    steps = [2, 3, 4, 6, 10, 20]
    samples = [
        sample(dash, make_scheduler("ddim", dash.scheduler_config), DashSchedule.every_step(n),
               sample_generators(0, range(1000)))[0]
        for n in steps
    ]
    noise = torch.randn(1000, 1, 8, 8, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    held_out = digits.images("heldout")
    fids = {}
    for name in ("digits_classifier", "digits_ae"):
        metric = QualityMetrics(name, datamodule=digits, cache_dir=tmp_path / "cache",
                                extractors_dir=extractors, kid_subsets=2)
        fids[name] = [metric(s)["fid"] for s in samples]
        real, fake = metric(held_out)["fid"], metric(noise)["fid"]
        print(name, [round(f, 3) for f in fids[name]], "held-out", round(real, 3), "noise", round(fake, 3))
        assert fake > 10 * real
    classifier = fids["digits_classifier"]
    assert all(a > b for a, b in itertools.pairwise(classifier))  # baseline FID falls as LSD grows
    rho = spearmanr(classifier, fids["digits_ae"]).statistic
    print("spearman", rho)
    assert rho >= 0.9


@pytest.mark.parametrize(("folder", "autoencoder_class"), [("vqvae", "VQModel"), ("vae", "AutoencoderKL")])
def test_latent_dash_trains_and_evaluates_on_an_image_folder(tmp_path, run_config, folder, autoencoder_class):
    """A latent Dash (pipeline directory with an autoencoder): Dot works on latents, images decode once."""
    import diffusers

    images = make_crop_folder(tmp_path / "crops", count=96)
    dash_dir = tmp_path / "dash"
    tiny_unet(sample_size=8, channels=4, seed=4).save_pretrained(dash_dir / "unet")
    DDPMScheduler().save_pretrained(dash_dir / "scheduler")
    getattr(diffusers, autoencoder_class)(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    ).save_pretrained(dash_dir / folder)
    (dash_dir / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    extractors = tmp_path / "extractors"
    data = ["dataset=image_folder", f"dataset.root={images}", "dataset.size=16", "dataset.batch_size=16",
            "dataset.num_workers=0"]
    fit_extractor.run(run_config("fit_extractor", [
        *data, "name=crops_ae", "kind=autoencoder", "steps=2", "code_dim=8", "width=8", f"save_dir={extractors}",
    ], tmp_path / "fit"))
    common = [*data, f"model.pretrained={dash_dir}", *TINY_DOT, "logger=none"]
    metrics, objects = train.run(run_config("train", [
        *common, "trainer.max_steps=2", "trainer.val_check_interval=2", "+trainer.limit_val_batches=1",
        "module.fine_steps=[2,8]",
    ], tmp_path / "train"))
    assert objects["dash"].sample_shape == (4, 8, 8) and "val/dot_mse" in metrics
    evaluate.run(run_config("evaluate", [
        *common, f"dot_checkpoint={tmp_path / 'train' / 'dot'}", "metric.extractor=crops_ae",
        f"metric.extractors_dir={extractors}", f"paths.cache_dir={tmp_path / 'cache'}",
        "metric.num_samples=40", "batch_size=20", "speed_ratio=3.0", "lsd_budgets=[2]", "grid_budgets=[2]", "baseline_reach=1",
    ], tmp_path / "evaluate"))
    records = [json.loads(line) for line in (tmp_path / "evaluate" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["decode_seconds"] > 0 for r in records)
