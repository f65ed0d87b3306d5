"""Every model config of the zoo, on a tiny stand-in of its checkpoint (tests/standins.py):
it loads through the real loading code, trains Dot one step and samples with Morse under
each scheduler the experiment files pair it with; offline, its real weights fail in one line.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import hydra
import pytest
import torch
from helpers import CONF_DIR, compose_config
from hydra import compose, initialize_config_dir
from standins import STANDINS, clip_model, coco_folder

from morse_exp import evaluate, fit_extractor, train
from morse_exp.clip_score import ClipScore, ClipScoreError
from morse_exp.evaluate import sample_contexts
from morse_exp.generation import generate
from morse_exp.loading import DashLoadError
from morse_exp.schedulers import make_scheduler

# the published models' configs; the shipped embedded Dashes have tests of their own
SHIPPED = ("unet_digits", "unet_emoji32")
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if p.stem not in SHIPPED)
PROMPTS = ["a red square", "two cats on a sofa", "", "a church at night"]


def experiment_schedulers() -> dict[str, set[str]]:
    """model -> the schedulers the experiment files run it with."""
    pairs: dict[str, set[str]] = defaultdict(set)
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="zoo"):
            cfg = compose("evaluate", overrides=[f"experiment={path.stem}"], return_hydra_config=True)
        pairs[cfg.hydra.runtime.choices.model].add(cfg.scheduler.name)
    return pairs


SCHEDULERS = experiment_schedulers()


def test_every_model_config_has_a_standin_and_an_experiment() -> None:
    assert set(MODELS) == set(STANDINS)
    assert set(MODELS) <= set(SCHEDULERS), f"models without an experiment: {set(MODELS) - set(SCHEDULERS)}"
    assert SCHEDULERS["ddpm_cifar10"] == {"ddpm", "ddim", "dpm_solver", "sde", "dpm_solver_sde"}


def contexts_for(dash, count: int):
    if dash.conditioning == "text":
        return [PROMPTS[i % len(PROMPTS)] for i in range(count)]
    if dash.conditioning == "class":
        return [i % dash.unet.config.num_class_embeds for i in range(count)]
    return None


@pytest.mark.parametrize("model", MODELS)
def test_model_config_on_its_standin_trains_a_step_and_samples(model: str, tmp_path: Path) -> None:
    overrides = STANDINS[model](tmp_path / "checkpoint")
    cfg = compose_config("train", [f"model={model}", *overrides], tmp_path / "run")
    dash = hydra.utils.instantiate(cfg.model)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash)
    jump = hydra.utils.instantiate(cfg.jump_stride)
    module = hydra.utils.instantiate(cfg.module)(
        dash=dash, dot=dot, scheduler=hydra.utils.instantiate(cfg.scheduler), max_gap=jump.max_gap,
    )
    decoded_shape = tuple(dash.decode(torch.zeros(1, *dash.sample_shape)).shape[1:])
    images = torch.rand(4, *decoded_shape) * 2 - 1

    # one Dot training step: gradients reach Dot's own weights, Dash's weights do not move
    dash_before = {n: p.clone() for n, p in dash.unet.named_parameters() if ".lora_" not in n}
    head_before = dot.head.out.weight.clone()
    optimizer = torch.optim.AdamW([p for _, p in dot.trainable_parameters()], lr=1e-2)
    loss, reuse = module.rollout(images, torch.Generator().manual_seed(0), contexts_for(dash, 4))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and torch.isfinite(reuse)
    assert not torch.equal(dot.head.out.weight, head_before)
    assert all(torch.equal(p, dash_before[n]) for n, p in dash.unet.named_parameters() if n in dash_before)

    # one Morse sample per scheduler of its experiments; a latent Dash decodes once per sample
    decoded_rows = []
    if dash.autoencoder is not None:
        decode = dash.autoencoder.decode
        dash.autoencoder.decode = lambda z, *a, **k: (decoded_rows.append(len(z)), decode(z, *a, **k))[1]
    guidance = [None, 3.0] if dash.conditioning == "text" else [None]
    runs = [(name, scale) for name in sorted(SCHEDULERS[model]) for scale in guidance]
    for name, scale in runs:
        generated = generate(
            dash, lambda name=name: make_scheduler(name, dash.scheduler_config),
            jump.fit_budget(4, 3.0), seed=0, num_samples=3, batch_size=2, dot=dot.eval(),
            contexts=contexts_for(dash, 3), guidance_scale=scale,
        )
        assert generated.images.shape == (3, *decoded_shape), (name, scale)
        assert torch.isfinite(generated.images).all(), (name, scale)
    if dash.autoencoder is not None:
        assert sum(decoded_rows) == 3 * len(runs)


def test_text_conditioning_is_per_sample_and_sdxl_zeroes_the_empty_prompt(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model=lcm_sdxl", *STANDINS["lcm_sdxl"](tmp_path / "checkpoint")], tmp_path / "run")
    dash = hydra.utils.instantiate(cfg.model)
    both = dash.condition(["a cat", "a dog"])
    alone = dash.condition(["a dog"])
    assert torch.allclose(both["encoder_hidden_states"][1], alone["encoder_hidden_states"][0], atol=1e-6)
    assert both["added_cond_kwargs"]["time_ids"][0].tolist() == [16, 16, 0, 0, 16, 16]
    guided = dash.condition(["a cat"], guided=True)
    assert guided["encoder_hidden_states"].shape[0] == 2
    assert guided["encoder_hidden_states"][0].abs().sum() == 0  # "" -> zeros (SDXL)
    assert guided["added_cond_kwargs"]["text_embeds"][0].abs().sum() == 0
    assert guided["encoder_hidden_states"][1].abs().sum() > 0


def test_evaluation_contexts_cycle_captions_and_balance_classes(tmp_path: Path) -> None:
    class Captioned:
        name = "captions"

        def captions(self, split: str) -> list[str]:
            return ["first", "second"]

    sd = hydra.utils.instantiate(compose_config(
        "train", ["model=sd14", *STANDINS["sd14"](tmp_path / "sd")], tmp_path / "run").model)
    assert sample_contexts(sd, Captioned(), 5) == ["first", "second", "first", "second", "first"]
    with pytest.raises(ValueError, match="no captions"):
        sample_contexts(sd, SimpleNamespace(name="digits"), 5)
    adm = hydra.utils.instantiate(compose_config(
        "train", ["model=adm_imagenet64", *STANDINS["adm_imagenet64"](tmp_path / "adm")], tmp_path / "run").model)
    assert sample_contexts(adm, None, 12) == [i % 10 for i in range(12)]
    with pytest.raises(ValueError, match="class labels -1..-1 are invalid"):
        adm.condition([-1, -1])  # an unlabelled dataset


@pytest.mark.parametrize("model", MODELS)
def test_absent_weights_fail_in_one_line_naming_the_override(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args, **kwargs):
        raise OSError("offline: no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    cfg = compose_config("train", [f"model={model}", f"paths.root_dir={tmp_path}"], tmp_path / "run")
    with pytest.raises(hydra.errors.InstantiationException) as error:
        hydra.utils.instantiate(cfg.model)
    assert isinstance(error.value.__cause__, DashLoadError)  # what the entry points print
    message = str(error.value.__cause__)
    assert "\n" not in message and "model.pretrained=" in message, message


def test_text_to_image_trains_and_evaluates_end_to_end_with_guidance_and_clip_score(tmp_path: Path) -> None:
    """sd14 on a tiny stand-in: captions from a COCO-layout folder train Dot; evaluate prompts
    sample i with held-out caption i, guides, and records FID and CLIP score for every point."""
    data = [f"dataset.root={coco_folder(tmp_path / 'coco')}", "dataset.size=16", "dataset.num_workers=0"]
    model = ["model=sd14", *STANDINS["sd14"](tmp_path / "sd14")]
    fit_extractor.run(compose_config("fit_extractor", [
        "dataset=coco", *data, "kind=autoencoder", "name=coco_ae", "steps=5", "code_dim=8", "width=8",
        f"save_dir={tmp_path / 'extractors'}"], tmp_path / "fit"))
    metrics, _ = train.run(compose_config("train", [
        *model, *data, "trainer.max_steps=2", "trainer.val_check_interval=2", "+trainer.limit_val_batches=1",
        "dataset.batch_size=4", "logger=none", "module.fine_steps=[2,8]"], tmp_path / "train"))
    assert "val/dot_mse" in metrics
    _, objects = evaluate.run(compose_config("evaluate", [
        "experiment=sd14_coco", *model, *data, f"dot_checkpoint={tmp_path / 'train' / 'dot'}",
        "lsd_budgets=[2,3]", "grid_budgets=[3]", "baseline_reach=1", "batch_size=8", "speed_ratio=3.0",
        "metric=image_folder", "metric.extractor=coco_ae", f"metric.extractors_dir={tmp_path / 'extractors'}",
        "metric.num_samples=40", f"paths.cache_dir={tmp_path / 'cache'}",
        f"clip_score.model={clip_model(tmp_path / 'clip')}", "logger=none"], tmp_path / "evaluate"))
    records = objects["records"]
    assert {(r["method"], r["lsd_budget"]) for r in records} == {
        (m, b) for m in ("baseline", "reuse", "morse", "oracle") for b in (2.0, 3.0)}
    assert all(r["guidance_scale"] == 7.5 and 0 <= r["clip_score"] <= 100 and r["num_samples"] == 40 for r in records)
    assert (tmp_path / "evaluate" / "speedup.json").is_file()


def test_clip_score_is_the_clipped_cosine_of_clips_own_embeddings(tmp_path: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    root = clip_model(tmp_path / "clip")
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    prompts = ["a red square", "a dog", "", "two cats", "a church at night"]
    score = ClipScore(str(root), batch_size=2)(images, prompts)
    model, processor = CLIPModel.from_pretrained(root).eval(), CLIPProcessor.from_pretrained(root)
    pixels = ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        image = model.get_image_features(**processor(images=list(pixels), return_tensors="pt")).pooler_output
        text = model.get_text_features(**processor(text=prompts, return_tensors="pt", padding=True)).pooler_output
    cosine = torch.nn.functional.cosine_similarity(image, text)
    assert score == pytest.approx(float((100 * cosine.clamp(min=0)).mean()), abs=1e-3)
    with pytest.raises(ClipScoreError) as error:
        ClipScore(str(tmp_path / "absent")).check()
    assert "\n" not in str(error.value) and "clip_score.model=" in str(error.value)
