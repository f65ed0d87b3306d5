"""The embedded 32 px task: the shipped emoji npz, its data module and its build script."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from helpers import compose_config

from morse_exp.data import DatasetNotFoundError, NpzImagesDataModule
from morse_exp.emoji32 import DEFAULT_FONT, SHIPPED, build

BUILD = "python -m morse_exp.emoji32"


def emoji32(tmp_path):
    return hydra.utils.instantiate(compose_config("train", ["dataset=emoji32"], tmp_path).dataset)


def test_shipped_set_loads_offline_with_its_shape_count_and_range(tmp_path):
    data = emoji32(tmp_path)
    train, heldout = data.split("train"), data.split("heldout")
    assert len(train) + len(heldout) == 3916 and len(heldout) == round(3916 * 0.1)
    images = train.tensors[0]
    assert tuple(images.shape[1:]) == data.image_shape == (3, 32, 32)
    assert images.min() == -1.0 and images.max() == 1.0
    with np.load(SHIPPED) as archive:
        raw = archive["images"]
    # every image is distinct, and the set is not blank: most pixels are not the white background
    assert len({image.tobytes() for image in raw}) == len(raw)
    assert (raw < 250).any(axis=-1).mean() > 0.3


def test_missing_file_names_the_build_command(tmp_path):
    data = NpzImagesDataModule(str(tmp_path / "absent.npz"), [3, 32, 32], BUILD)
    with pytest.raises(DatasetNotFoundError, match="does not exist: build it with python -m morse_exp.emoji32"):
        data.check_available()


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_corrupted_file_names_the_build_command(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetNotFoundError, match="rebuild it with python -m morse_exp.emoji32") as error:
        NpzImagesDataModule(str(path), [3, 32, 32], BUILD).check_available()
    assert "\n" not in str(error.value)


def test_wrong_image_shape_is_refused(tmp_path):
    path = tmp_path / "gray.npz"
    np.savez(path, images=np.zeros((4, 32, 32, 1), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError, match=r"not at least 2 uint8 images of shape \(N, 32, 32, 3\)"):
        NpzImagesDataModule(str(path), [3, 32, 32], BUILD).check_available()


def test_build_is_reproducible_and_matches_the_shipped_file(tmp_path):
    if not Path(DEFAULT_FONT).is_file():
        pytest.skip("fonts-noto-color-emoji is not installed (apt-get install fonts-noto-color-emoji)")
    read, written = build(DEFAULT_FONT, tmp_path / "a.npz")
    build(DEFAULT_FONT, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() == SHIPPED.read_bytes()
    assert written <= read and written == 3916


def test_shipped_dash_loads_and_samples_four_images_at_two_steps(tmp_path):
    """model=unet_emoji32 is the shipped 32 px Dash: it loads offline and samples (3, 32, 32)
    images in [-1, 1] that depend on the seed, not a constant output."""
    from morse_exp.generation import generate
    from morse_exp.schedule import DashSchedule
    from morse_exp.schedulers import make_scheduler

    cfg = compose_config("evaluate", ["model=unet_emoji32"], tmp_path)
    assert cfg.dataset.name == "emoji32" and cfg.dot.width == 8  # the model brings its data set and slim Dot
    dash = hydra.utils.instantiate(cfg.model)
    assert dash.sample_shape == (3, 32, 32) and sum(p.numel() for p in dash.parameters()) > 2_000_000
    images = generate(dash, lambda: make_scheduler("ddim", dash.scheduler_config), DashSchedule.every_step(2),
                      seed=0, num_samples=4, batch_size=4, device="cpu").images
    assert images.shape == (4, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert (images[0] - images[1]).abs().mean() > 0.05


def test_tiny_budget_evaluate_runs_end_to_end_on_the_shipped_dash(tmp_path):
    """Baseline, reuse and the oracle Dot at 2 LSD, 200 samples, FID under the shipped emoji32
    extractor: finite FIDs for each method and a report."""
    from morse_exp.evaluate import run

    cfg = compose_config("evaluate", [
        "model=unet_emoji32", "methods=[baseline,reuse,oracle]", "lsd_budgets=[2]", "baseline_reach=1",
        "metric.num_samples=200", "batch_size=100", "speed_ratio=8.0", "bootstrap.resamples=0", "logger=none",
        "grid_budgets=[]", f"paths.cache_dir={tmp_path}/cache", f"metric.extractors_dir={tmp_path}/none",
    ], tmp_path / "run")
    _, objects = run(cfg)
    fids = {r["method"]: r["fid"] for r in objects["records"]}
    assert set(fids) == {"baseline", "reuse", "oracle"} and all(np.isfinite(list(fids.values())))
    assert {r["extractor"] for r in objects["records"]} == {"emoji32_autoencoder"}
    assert (tmp_path / "run" / "speedup.md").is_file()


def test_fid_of_real_halves_is_small_next_to_noise_under_the_shipped_extractor(tmp_path):
    """The scale of emoji32 FIDs: two halves of the training split (1,762 vs 1,762) against
    uniform noise, under the shipped autoencoder's features (printed with pytest -s)."""
    import torch

    from morse_exp.metrics import QualityMetrics

    train = emoji32(tmp_path).images("train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    half_a, half_b = train[order[: len(train) // 2]], train[order[len(train) // 2 :]]
    noise = torch.rand(len(half_b), 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    metrics = QualityMetrics("emoji32_autoencoder", reference=half_a, cache_dir=tmp_path,
                             extractors_dir=tmp_path / "none", kid_subsets=10)
    halves, noisy = metrics(half_b), metrics(noise)
    print(f"emoji32 FID halves ({len(half_b)} vs {len(half_a)}) {halves['fid']:.3f}; noise {noisy['fid']:.3f}")
    assert halves["num_samples"] == len(half_b) == 1762
    assert noisy["fid"] > 10 * halves["fid"]


def test_shipped_dot_loads_on_the_shipped_dash_and_is_trained(tmp_path):
    """experiment=emoji32_main pairs the shipped Dash with the shipped DDIM Dot: its weights load
    (made for this Dash and Dot construction), for consistent-clipping DDIM and the gaps of the
    jump pattern the experiment runs, and its residual is not reuse's zero."""
    from morse_exp.checkpoints import load_dot_weights

    cfg = compose_config("evaluate", ["experiment=emoji32_main"], tmp_path)
    dash = hydra.utils.instantiate(cfg.model)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash)
    record = load_dot_weights(dot, cfg.dot_checkpoint)
    assert record["scheduler"] == cfg.scheduler.name == "ddim"
    assert record["scheduler_options"]["use_clipped_model_output"] is cfg.scheduler.use_clipped_model_output is True
    assert record["coverage"]["max_gap"] >= cfg.jump_stride.stride == 3 and record["steps"] >= 1000
    generator = torch.Generator().manual_seed(0)
    x_ts, x_ti, z_ts = (torch.randn(2, 3, 32, 32, generator=generator) for _ in range(3))
    with torch.no_grad():
        residual = dot(x_ts, x_ti, z_ts, torch.tensor(500), torch.tensor(450))
    assert residual.shape == (2, 3, 32, 32) and residual.abs().mean() > 1e-4
