"""pretrain: a pixel Dash, a latent Dash on a given autoencoder, shape checks, architecture configs."""

from __future__ import annotations

import json
import warnings

import diffusers
import hydra
import pytest
from helpers import CONF_DIR, compose_config, make_crop_folder, tiny_unet
from PIL import Image

from morse_exp import pretrain
from morse_exp.loading import DashLoadError, load_dash

TINY = ["trainer.max_steps=3", "grid_samples=4", "logger=none", "dataset.batch_size=16",
        "architecture.layers_per_block=1", "architecture.norm_num_groups=4",
        "architecture.attention_head_dim=4"]
# unet_latent_cifar shrunk; its default latent shape (4, 8, 8) is that of the tiny autoencoders
TINY_LATENT = [*TINY, "architecture=unet_latent_cifar", "architecture.block_out_channels=[8,16,16]",
               "architecture.dropout=0.0"]
SCALING = 0.5  # not diffusers' default (0.18215), to see that the autoencoder's own one is kept


def tiny_autoencoder(class_name: str):
    """A 2-level (2x downsampling) autoencoder of ``class_name``: 3 x 16 x 16 -> 4 x 8 x 8."""
    return getattr(diffusers, class_name)(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        scaling_factor=SCALING,
    )


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Image-folder overrides for 64 RGB 16 x 16 crops."""
    root = make_crop_folder(tmp_path_factory.mktemp("data") / "crops", count=64, size=16)
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.size=16", "dataset.num_workers=0"]


def test_pixel_pretrain_writes_a_dash_that_loads(tmp_path):
    cfg = compose_config("pretrain", [*TINY, "architecture.block_out_channels=[8,16]"], tmp_path)
    metrics, objects = pretrain.run(cfg)
    dash = load_dash(str(tmp_path / "dash"))
    assert dash.autoencoder is None and dash.sample_shape == (1, 8, 8)
    assert json.loads((tmp_path / "dash" / "provenance.json").read_text())["steps"] == 3
    assert Image.open(tmp_path / "samples.png").size == (4 * 34 + 2, 36)  # 4 tiles, 8 px upscaled to 32
    assert objects["dash"].source == str(tmp_path / "dash") and "train/loss" in metrics


@pytest.mark.parametrize(("class_name", "layout"), [("AutoencoderKL", "model dir"), ("VQModel", "pipeline dir")])
def test_latent_pretrain_writes_a_pipeline_that_loads_as_a_latent_dash(tmp_path, crops, class_name, layout):
    folder = {"AutoencoderKL": "vae", "VQModel": "vqvae"}[class_name]
    given = tmp_path / "given"  # the autoencoder alone, or inside a pipeline directory
    tiny_autoencoder(class_name).save_pretrained(given if layout == "model dir" else given / folder)
    run_dir = tmp_path / "run"
    pretrain.run(compose_config("pretrain", [*crops, *TINY_LATENT, f"autoencoder={given}"], run_dir))

    saved = run_dir / "dash"
    assert {p.name for p in saved.iterdir()} == {"model_index.json", "unet", "scheduler", folder, "provenance.json"}
    assert (saved / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (saved / folder / "diffusion_pytorch_model.safetensors").is_file()
    dash = load_dash(str(saved))
    assert type(dash.autoencoder).__name__ == class_name
    assert dash.latent_scaling == SCALING and dash.sample_shape == (4, 8, 8)
    assert not saved.with_name("dash.partial").exists()
    assert Image.open(run_dir / "samples.png").mode == "RGB"  # decoded: 3 channels, not 4 latent ones


@pytest.mark.parametrize(("overrides", "fix"), [
    (["architecture.in_channels=3"], "architecture.in_channels=4 architecture.out_channels=4"),
    (["architecture.sample_size=4"], "architecture.sample_size=8"),
])
def test_a_latent_shape_mismatch_is_one_line_before_training(tmp_path, crops, overrides, fix):
    tiny_autoencoder("AutoencoderKL").save_pretrained(tmp_path / "vae")
    cfg = compose_config("pretrain", [*crops, *TINY_LATENT, *overrides, f"autoencoder={tmp_path / 'vae'}"],
                         tmp_path / "run")
    with pytest.raises(ValueError, match=r"autoencoder's latents have shape \(4, 8, 8\)") as error:
        pretrain.run(cfg)
    assert fix in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_a_pixel_shape_mismatch_names_the_overrides(tmp_path):
    cfg = compose_config("pretrain", [*TINY, "architecture=unet_cifar10"], tmp_path)
    with pytest.raises(ValueError, match="architecture.in_channels=1 architecture.out_channels=1 "
                                         "architecture.sample_size=8$"):
        pretrain.run(cfg)


@pytest.mark.parametrize(("what", "error_class", "message"), [
    ("missing", FileNotFoundError, "is not a directory"),
    ("empty", FileNotFoundError, "has no config.json, vae/ or vqvae/"),
    ("a unet", DashLoadError, "names class 'UNet2DModel': supported here are VQModel, AutoencoderKL"),
])
def test_autoencoder_load_errors_are_one_line(tmp_path, what, error_class, message):
    path = tmp_path / "autoencoder"
    if what == "empty":
        path.mkdir()
    if what == "a unet":
        tiny_unet().save_pretrained(path)
    cfg = compose_config("pretrain", [*TINY, f"autoencoder={path}"], tmp_path / "run")
    with pytest.raises(error_class, match=message) as error:
        pretrain.run(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("name", "millions", "shape"), [
    ("unet_cifar10", 35.75, (3, 32, 32)),
    ("unet_celeba64", 78.70, (3, 64, 64)),
    ("unet_imagenet64", 295.13, (3, 64, 64)),
    ("unet_latent_cifar", 16.06, (4, 8, 8)),
])
def test_architecture_configs_build_with_their_documented_size(tmp_path, name, millions, shape):
    cfg = compose_config("pretrain", [f"architecture={name}"], tmp_path)
    unet = hydra.utils.instantiate(cfg.architecture)
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)
    assert (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size) == shape
    assert unet.config.out_channels == unet.config.in_channels
    assert f"{millions:.2f}M parameters" in (CONF_DIR / "architecture" / f"{name}.yaml").read_text()


def test_the_latent_architecture_follows_the_latent_shape(tmp_path):
    cfg = compose_config("pretrain", ["architecture=unet_latent_cifar", "architecture.in_channels=3",
                                      "architecture.sample_size=16"], tmp_path)
    unet = hydra.utils.instantiate(cfg.architecture)
    assert (unet.config.in_channels, unet.config.out_channels, unet.config.sample_size) == (3, 3, 16)


def test_pretrain_resumes_from_its_last_checkpoint_and_keeps_the_metrics_rows(tmp_path):
    """A stopped pretraining resumes with ckpt_path=last; metrics.csv keeps the earlier rows."""
    common = [*TINY, "architecture.block_out_channels=[8,16]", "logger=csv", "trainer.log_every_n_steps=1",
              "checkpoint.every_n_train_steps=2", "+trainer.limit_train_batches=4"]
    pretrain.run(compose_config("pretrain", [*common, "trainer.max_steps=4"], tmp_path))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows_before = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    _, objects = pretrain.run(compose_config("pretrain", [*common, "trainer.max_steps=6", "ckpt_path=last"], tmp_path))
    assert objects["trainer"].global_step == 6
    rows_after = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert rows_after[: len(rows_before)] == rows_before and len(rows_after) == len(rows_before) + 2
    assert json.loads((tmp_path / "dash" / "provenance.json").read_text())["steps"] == 6


def test_emoji32_architecture_fits_the_emoji32_dataset_inside_a_dot(tmp_path):
    """The shipped 32 px architecture takes the emoji images, and Dot (m = 2) runs its body at 8x8."""
    cfg = compose_config("pretrain", ["dataset=emoji32", "architecture=unet_emoji32"], tmp_path)
    unet = hydra.utils.instantiate(cfg.architecture)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    assert (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size) == datamodule.image_shape
    assert len(unet.config.block_out_channels) == 3 and sum(p.numel() for p in unet.parameters()) > 2_000_000


def test_init_from_continues_from_a_saved_dash_and_counts_its_steps(tmp_path):
    """init_from copies a saved Dash's weights (EMA starts there too): with no further steps the
    new Dash equals the given one tensor for tensor, and the provenance adds both runs' steps."""
    common = [*TINY, "architecture.block_out_channels=[8,16]"]
    pretrain.run(compose_config("pretrain", common, tmp_path / "first"))
    given = tmp_path / "first" / "dash"
    pretrain.run(compose_config("pretrain", [*common, f"init_from={given}", "trainer.max_steps=0"], tmp_path / "same"))
    before, after = load_dash(str(given)).unet.state_dict(), load_dash(str(tmp_path / "same" / "dash")).unet.state_dict()
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    more = [*common, f"init_from={given}", "checkpoint.every_n_train_steps=1"]
    pretrain.run(compose_config("pretrain", [*more, "trainer.max_steps=2"], tmp_path / "more"))
    provenance = json.loads((tmp_path / "more" / "dash" / "provenance.json").read_text())
    assert provenance["steps"] == 3 + 2 and provenance["init_from"] == str(given)
    assert [run["from_step"] for run in provenance["history"]] == [0, 3]
    # its checkpoints keep the count: resumed without init_from, it still adds the first 3 steps
    pretrain.run(compose_config("pretrain", [*common, "ckpt_path=last", "trainer.max_steps=4"], tmp_path / "more"))
    provenance = json.loads((tmp_path / "more" / "dash" / "provenance.json").read_text())
    assert provenance["steps"] == 3 + 4
    # and its history: the first run from 0, the init_from run from 3, the resumed one from 3 + 2
    assert [run["from_step"] for run in provenance["history"]] == [0, 3, 5]
    assert all(run["command"].startswith("python -m morse_exp.pretrain") for run in provenance["history"])


def test_init_from_another_architecture_is_one_line_before_training(tmp_path):
    pretrain.run(compose_config("pretrain", [*TINY, "architecture.block_out_channels=[8,16]"], tmp_path / "first"))
    cfg = compose_config("pretrain", [*TINY, "architecture.block_out_channels=[8,8]",
                                      f"init_from={tmp_path / 'first' / 'dash'}"], tmp_path / "other")
    with pytest.raises(ValueError, match=r"^init_from=.*does not hold the configured architecture \(\d+ parameters differ"):
        pretrain.run(cfg)
    assert not (tmp_path / "other" / "checkpoints").exists()


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_in_one_line(monkeypatch, tmp_path, native):
    """bf16 autocast without avx512_bf16/AMX is ~20x slower than fp32: the trainer says so."""
    from morse_exp import cli

    monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda: native)
    cfg = compose_config("pretrain", [*TINY, "trainer.precision=bf16-mixed"], tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.instantiate_trainer(cfg, "pretrain")
    emulated = [w for w in caught if "emulates bf16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    if emulated:
        assert "trainer.precision=bf16-mixed" in str(emulated[0].message) and "\n" not in str(emulated[0].message)


def test_lr_factor_warms_up_holds_then_anneals_to_zero():
    from morse_exp.pretraining import lr_factor

    factors = [lr_factor(step, warmup_steps=4, total_steps=20, anneal_steps=8) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4:12] == [1.0] * 8
    assert factors[12:] == [(20 - step) / 8 for step in range(12, 20)] and factors[-1] == 1 / 8
    assert [lr_factor(step, 4, 20, 0) for step in range(4, 20)] == [1.0] * 16


def test_anneal_steps_take_the_rate_to_zero_and_a_decay_longer_than_the_run_is_refused(tmp_path):
    common = [*TINY, "architecture.block_out_channels=[8,16]", "trainer.max_steps=6", "pretraining.warmup_steps=1"]
    _, objects = pretrain.run(compose_config("pretrain", [*common, "pretraining.anneal_steps=3"], tmp_path / "a"))
    # the scheduler has stepped 6 times: the rate for a 7th step would be (6 - 6) / 3 of the peak
    assert objects["trainer"].optimizers[0].param_groups[0]["lr"] == 0.0
    with pytest.raises(ValueError, match=r"^pretraining.anneal_steps=7 is more than trainer.max_steps=6"):
        pretrain.run(compose_config("pretrain", [*common, "pretraining.anneal_steps=7"], tmp_path / "b"))
    assert not (tmp_path / "b" / "checkpoints").exists()
