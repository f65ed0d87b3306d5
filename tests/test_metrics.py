"""FID / KID through torch-fidelity with the project's own feature extractors (CPU, fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_crop_folder

from morse_exp.data import DigitsDataModule
from morse_exp.extractors import (
    INFO_FILE,
    SHIPPED_DIR,
    WEIGHTS_FILE,
    file_sha256,
    load_extractor,
)
from morse_exp.metrics import QualityMetrics, SplitImages

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions on a shared CPU: one thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return DigitsDataModule()


@pytest.fixture
def no_user_extractors(tmp_path):
    """An empty user extractor directory: only the shipped extractors are visible."""
    return tmp_path / "no_extractors"


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_shipped_classifier_loads_verified_and_accurate(digits, no_user_extractors):
    extractor = load_extractor("digits_classifier", no_user_extractors)
    assert extractor.path == SHIPPED_DIR / "digits_classifier"
    info = json.loads((extractor.path / INFO_FILE).read_text())
    assert info["sha256"] == file_sha256(extractor.path / WEIGHTS_FILE)
    assert (extractor.path / WEIGHTS_FILE).stat().st_size < 1_000_000
    assert info["kind"] == "classifier" and info["feature_dim"] == 64
    assert (info["in_channels"], info["resolution"]) == (1, 8)
    assert info["training"]["seed"] == 0
    assert info["training"]["command"].startswith("python -m morse_exp.fit_extractor")
    heldout = digits.split("heldout")
    images, labels = heldout.tensors
    images = ((images + 1) * 127.5).round() / 127.5 - 1  # what the metric feeds: 8-bit images
    with torch.no_grad():
        accuracy = (extractor.model(images).argmax(1) == labels).float().mean().item()
    assert len(labels) == 360
    assert accuracy >= 0.98
    assert info["heldout_accuracy"] >= 0.98
    assert abs(accuracy - info["heldout_accuracy"]) < 0.01


def test_changed_weights_are_refused(tmp_path):
    copy = tmp_path / "extractors" / "digits_classifier"
    shutil.copytree(SHIPPED_DIR / "digits_classifier", copy)
    data = bytearray((copy / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256") as error:
        load_extractor("digits_classifier", tmp_path / "extractors")
    one_line(error)


def test_fid_of_real_halves_is_small_next_to_noise(digits, tmp_path, no_user_extractors):
    train = digits.images("train")  # 1,437 images
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    half_a, half_b = train[order[:718]], train[order[718:]]  # 718 reference, 719 samples
    noise = torch.randn(719, 1, 8, 8, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    metrics = QualityMetrics("digits_classifier", reference=half_a, cache_dir=tmp_path,
                             extractors_dir=no_user_extractors, kid_subsets=10)
    halves, noisy = metrics(half_b), metrics(noise)
    print(f"FID halves (719 vs 718) {halves['fid']:.3f}, KID {halves['kid']:.5f}; "
          f"FID noise (719 vs 718) {noisy['fid']:.3f}, KID {noisy['kid']:.5f}")
    assert (halves["num_samples"], halves["num_reference"]) == (719, 718)
    assert halves["kid_subset_size"] == 718  # clipped to the smaller set
    assert noisy["fid"] > 10 * halves["fid"]
    assert noisy["kid"] > 10 * abs(halves["kid"])
    assert set(halves) >= {"fid", "kid", "kid_std", "num_samples", "num_reference", "extractor",
                           "extractor_sha256"}
    assert halves["extractor_sha256"] == file_sha256(SHIPPED_DIR / "digits_classifier" / WEIGHTS_FILE)


def test_reference_statistics_are_cached(digits, tmp_path, no_user_extractors, monkeypatch):
    samples = digits.images("heldout")  # 360
    first = QualityMetrics("digits_classifier", datamodule=digits, reference_split="train",
                           cache_dir=tmp_path / "cache", extractors_dir=no_user_extractors, kid_subsets=5)
    assert first.reference_cache_files() == []
    result = first(samples)
    files = first.reference_cache_files()
    assert len(files) == 2  # torch-fidelity's features + FID statistics of the reference
    assert result["num_reference"] == 1437 and result["kid_subset_size"] == 360

    def untouchable(self, index):
        raise AssertionError("reference images were read again")

    monkeypatch.setattr(SplitImages, "__getitem__", untouchable)
    second = QualityMetrics("digits_classifier", datamodule=digits, reference_split="train",
                            cache_dir=tmp_path / "cache", extractors_dir=no_user_extractors, kid_subsets=5)
    again = second(samples)
    assert again["fid"] == pytest.approx(result["fid"])
    # another reference count is another cache entry
    other = QualityMetrics("digits_classifier", datamodule=digits, num_reference=500,
                           cache_dir=tmp_path / "cache", extractors_dir=no_user_extractors)
    assert other.reference_cache_files() == []


def test_unknown_extractor_lists_the_names(digits, tmp_path, no_user_extractors):
    metrics = QualityMetrics("no_such_net", datamodule=digits, cache_dir=tmp_path,
                             extractors_dir=no_user_extractors)
    with pytest.raises(ValueError, match="unknown feature extractor 'no_such_net'") as error:
        metrics.check()
    message = one_line(error)
    assert "digits_classifier" in message and "inception-v3-compat" in message


def test_resolution_and_channel_mismatch(digits, tmp_path, no_user_extractors):
    metrics = QualityMetrics("digits_classifier", datamodule=digits, cache_dir=tmp_path,
                             extractors_dir=no_user_extractors)
    for shape in ((100, 1, 16, 16), (100, 3, 8, 8)):
        with pytest.raises(ValueError, match="digits_classifier") as error:
            metrics(torch.zeros(shape))
        message = one_line(error)
        assert str(tuple(shape[1:])) in message and "(1, 8, 8)" in message


def test_too_few_samples(digits, tmp_path, no_user_extractors):
    metrics = QualityMetrics("digits_classifier", datamodule=digits, cache_dir=tmp_path,
                             extractors_dir=no_user_extractors)
    with pytest.raises(ValueError, match="at least 65") as error:
        metrics(digits.images("heldout", limit=64))
    one_line(error)
    with pytest.raises(ValueError, match="at least 65"):
        QualityMetrics("digits_classifier", datamodule=digits, num_samples=10, cache_dir=tmp_path,
                       extractors_dir=no_user_extractors).check()


def test_inception_needs_local_weights_before_sampling(digits, tmp_path):
    metrics = QualityMetrics("inception-v3-compat", datamodule=digits, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"metric\.inception_weights=/path/to/pt_inception") as error:
        metrics.check()
    one_line(error)
    missing = QualityMetrics("inception-v3-compat", datamodule=digits, cache_dir=tmp_path,
                             inception_weights=str(tmp_path / "absent.pth"))
    with pytest.raises(FileNotFoundError, match="metric.inception_weights="):
        missing.check()


def test_metric_configs_instantiate(digits, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    for name, extractor in (("digits", "digits_classifier"), ("inception", "inception-v3-compat")):
        cfg = OmegaConf.load(CONF_DIR / "metric" / f"{name}.yaml")
        cfg.cache_dir, cfg.extractors_dir = str(tmp_path), str(tmp_path / "none")
        metrics = instantiate(cfg)(datamodule=digits)
        assert isinstance(metrics, QualityMetrics) and metrics.extractor_name == extractor
    assert metrics.num_samples >= 2049  # inception: FID needs feature dim + 1
    digits_cfg = OmegaConf.load(CONF_DIR / "metric" / "digits.yaml")
    assert digits_cfg.num_samples == 2000 and digits_cfg.reference_split == "train"


def test_fit_extractor_autoencoder_on_image_folder(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from morse_exp.data import ImageFolderDataModule
    from morse_exp.fit_extractor import run

    folder = make_crop_folder(tmp_path / "crops")
    save_dir = tmp_path / "extractors"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("fit_extractor", overrides=[
            "name=crops_ae", "kind=autoencoder", "steps=4", "batch_size=32", "code_dim=16",
            "width=8", f"save_dir={save_dir}", f"paths.output_dir={tmp_path / 'run'}",
        ])
    cfg.dataset = OmegaConf.create({
        "_target_": "morse_exp.data.ImageFolderDataModule", "root": str(folder), "size": 16,
        "channels": 3, "heldout_fraction": 0.1, "split_seed": 0,
    })
    scores, objects = run(cfg)
    path = save_dir / "crops_ae"
    assert objects["path"] == path and sorted(p.name for p in save_dir.iterdir()) == ["crops_ae"]
    info = json.loads((path / INFO_FILE).read_text())
    assert info["kind"] == "autoencoder" and info["in_channels"] == 3 and info["resolution"] == 16
    assert info["feature_dim"] == 16 + 8 + 16  # bottleneck + texture statistics
    assert info["heldout_accuracy"] is None and np.isfinite(scores["heldout_mse"])
    assert info["sha256"] == file_sha256(path / WEIGHTS_FILE)

    crops = ImageFolderDataModule(str(folder), 16)
    train, heldout = crops.images("train"), crops.images("heldout")  # 216 and 24 crops
    metrics = QualityMetrics("crops_ae", reference=train[:100], cache_dir=tmp_path / "cache",
                             extractors_dir=save_dir, kid_subsets=5)
    real = metrics(torch.cat([train[100:], heldout]))
    noise = metrics(torch.rand(140, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert np.isfinite(real["fid"]) and noise["fid"] > real["fid"]
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        metrics(torch.zeros(100, 1, 8, 8))


def test_auto_kind_is_classifier_for_labelled_data(digits):
    from morse_exp.fit_extractor import fit

    model, record = fit(digits, kind="auto", steps=2)
    assert model.kind == "classifier" and record["num_classes"] == 10
    assert 0.0 <= record["heldout_accuracy"] <= 1.0


def test_fid_bootstrap_resamples_the_samples_against_fixed_reference_statistics(digits, tmp_path, no_user_extractors):
    """Deterministic under its seed, paired across sample sets of one size, and centred on the
    FID up to the resampling bias (repeated samples raise FID a little)."""
    train = digits.images("train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    reference, samples = train[order[:718]], train[order[718:]]
    metrics = QualityMetrics("digits_classifier", reference=reference, cache_dir=tmp_path,
                             extractors_dir=no_user_extractors, kid_subsets=10)
    fid = metrics(samples)["fid"]
    first, again = metrics.fid_bootstrap(samples, 40, seed=3), metrics.fid_bootstrap(samples, 40, seed=3)
    assert first == again and len(first) == 40 and len(set(first)) > 30
    assert metrics.fid_bootstrap(samples, 40, seed=4) != first
    assert fid < float(np.median(first)) < fid + 1.0  # biased upwards, by less than the FID of noise
    # paired: the same draws on shifted samples move every resample alike
    shifted = metrics.fid_bootstrap((samples + 0.3).clamp(-1, 1), 40, seed=3)
    assert all(b > a for a, b in zip(first, shifted, strict=True))
    assert metrics.fid_bootstrap(samples, 0) == []


class _Payload:
    """A pickle that, when loaded with weights_only=False, creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_planted_in_the_metric_cache_never_runs(digits, tmp_path, no_user_extractors):
    train = digits.images("train")
    reference, samples = train[:700], train[700:1400]
    metrics = QualityMetrics("digits_classifier", reference=reference, cache_dir=tmp_path / "cache",
                             extractors_dir=no_user_extractors, kid_subsets=10)
    clean = metrics(samples)["fid"]
    cached = sorted((tmp_path / "cache").glob("ref-*.pt"))
    assert cached, "torch-fidelity cached nothing: the test would prove nothing"
    marker = tmp_path / "payload_ran"
    for path in cached:  # every cached file of the reference becomes a payload
        torch.save({"mu": _Payload(marker)}, path)
    with pytest.warns(UserWarning, match="holds more than tensors and arrays: deleted"):
        again = metrics(samples)["fid"]
    assert not marker.exists()
    assert again == pytest.approx(clean)
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"


def test_an_interrupted_fit_resumes_to_the_same_extractor(digits, tmp_path, monkeypatch):
    from morse_exp import fit_extractor
    from morse_exp.fit_extractor import fit

    whole, _ = fit(digits, kind="classifier", steps=6, width=8, code_dim=8)
    save = fit_extractor._save_state

    def save_then_stop(*args):
        save(*args)
        raise KeyboardInterrupt  # the run is stopped right after its step-3 save

    state = tmp_path / "run" / "fit_state.pt"
    monkeypatch.setattr(fit_extractor, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit(digits, kind="classifier", steps=6, width=8, code_dim=8, state_path=state, save_every=3)
    monkeypatch.undo()
    assert torch.load(state, weights_only=True)["step"] == 3
    resumed, _ = fit(digits, kind="classifier", steps=6, width=8, code_dim=8, state_path=state, save_every=3)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert torch.load(state, weights_only=True)["step"] == 6
    with pytest.raises(ValueError, match=r"fit_state.pt was saved with other settings \(lr differ\)"):
        fit(digits, kind="classifier", steps=6, width=8, code_dim=8, lr=1e-3, state_path=state)
