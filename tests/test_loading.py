"""Dash loading through diffusers' own code: layouts, conversions and one-line failures."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, VQModel

from morse_exp.dash import Dash
from morse_exp.loading import DashLoadError, load_dash


def test_bare_model_directory_round_trips(tmp_path, make_unet):
    unet = make_unet(seed=3)
    unet.save_pretrained(tmp_path, safe_serialization=True)
    DDPMScheduler(beta_schedule="squaredcos_cap_v2").save_config(tmp_path)
    dash = load_dash(str(tmp_path))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(dash(x, 300), unet(x, 300).sample)
    assert dash.scheduler_config["beta_schedule"] == "squaredcos_cap_v2"
    assert not any(p.requires_grad for p in dash.parameters())


@pytest.mark.parametrize(("folder", "autoencoder_class"), [("vqvae", VQModel), ("vae", AutoencoderKL)])
def test_pipeline_directory_keeps_the_autoencoder_and_its_scaling(tmp_path, make_unet, folder, autoencoder_class):
    make_unet(channels=4).save_pretrained(tmp_path / "unet")
    DDPMScheduler().save_pretrained(tmp_path / "scheduler")
    autoencoder_class(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",), scaling_factor=0.5,
    ).save_pretrained(tmp_path / folder)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    dash = load_dash(str(tmp_path))
    assert isinstance(dash.autoencoder, autoencoder_class) and dash.latent_scaling == 0.5
    images = dash.decode(torch.randn(2, 4, 8, 8))
    assert images.shape == (2, 3, 8, 8)
    assert dash.encode(torch.rand(1, 3, 8, 8) * 2 - 1).shape == (1, 4, 8, 8)


def test_directory_without_a_model_is_one_clear_line(tmp_path):
    with pytest.raises(DashLoadError, match=r"no diffusers model in .*: expected model_index.json"):
        load_dash(str(tmp_path))


def test_corrupted_safetensors_is_one_clear_line(tmp_path, make_unet):
    make_unet().save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(DashLoadError, match=r"cannot load UNet2DModel weights from") as caught:
        load_dash(str(tmp_path))
    assert "\n" not in str(caught.value)


def test_hub_id_offline_names_the_override_and_pretrain(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DashLoadError, match=r"model.pretrained=/path/to/local/copy.*morse_exp.pretrain"):
        load_dash("google/ddpm-cifar10-32-not-cached")


def test_missing_local_path_is_refused():
    with pytest.raises(DashLoadError, match=r"does not exist"):
        load_dash("./no/such/dir")


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_parameterisations_convert_to_the_noise(training_config, make_unet, prediction_type):
    dash = Dash(make_unet(), training_config, prediction_type=prediction_type)
    x0, eps = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([5, 400, 990])
    a = dash.alphas_cumprod[t].view(-1, 1, 1, 1)
    x = a.sqrt() * x0 + (1 - a).sqrt() * eps
    output = a.sqrt() * eps - (1 - a).sqrt() * x0 if prediction_type == "v_prediction" else x0
    assert torch.allclose(dash.to_eps(output, x, t), eps, atol=1e-4)


def test_unknown_prediction_type_is_refused(training_config, make_unet):
    with pytest.raises(ValueError, match=r"prediction_type 'score' is not supported"):
        Dash(make_unet(), training_config, prediction_type="score")
