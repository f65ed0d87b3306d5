"""Why does the emoji32 baseline's FID rise from 20 to 50 DDIM steps? Split it and look.

For each sampler setting (name:steps[:spacing]) it draws NUM samples of the Dash (seed set
SEED, the per-index generators evaluate uses), scores them against the emoji32 training split
in the shipped extractor's feature space and prints, per setting:

- FID and its two terms: ||mu_s - mu_r||^2 (where the samples sit) and the covariance term
  (how they spread), for all 160 features and per feature block (64-d bottleneck code, the
  two texture-statistic blocks of 32 and 64 channels);
- pixel statistics beside the real images': mean colour, pixel std, the share of pixels at
  the ends of the range (|x| > 0.98), per-image spatial std (contrast), the share of
  non-white pixels and their chroma (max - min channel: how colourful the emoji are).

A setting is ``scheduler:steps[:option=value...]`` with the scheduler's constructor options
and step options (trailing spacing unless ``timestep_spacing=leading``), e.g.
``ddim:50:clip_sample=false`` or ``ddim:50:use_clipped_model_output=true``.
Samples are cached as .pt under OUT so that the analysis can be redone without sampling.
Usage (one thread, repository root):
  python experiments/emoji32/fid_diagnosis.py --dash src/morse_exp/assets/dash_emoji32 \
      --settings ddim:10 ddim:20 ddim:50 ddpm:50 ddim:50:clip_sample=false --num 1000 --seed 1
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf
from scipy import linalg

from morse_exp.extractors import load_extractor
from morse_exp.generation import generate
from morse_exp.loading import load_dash
from morse_exp.metrics import to_uint8
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import make_scheduler

BLOCKS = {"code": slice(0, 64), "texture1": slice(64, 96), "texture2": slice(96, 160)}


def features(extractor, images: torch.Tensor) -> np.ndarray:
    """(N, 3, 32, 32) in [-1, 1] -> (N, 160) features, quantised to uint8 first as FID does."""
    quantised = to_uint8(images).float() / 127.5 - 1.0
    with torch.no_grad():
        return torch.cat([extractor.model.features(quantised[i : i + 500]) for i in range(0, len(images), 500)]).double().numpy()


def fid_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean term, covariance term) of the Frechet distance between feature sets a and b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    return float(((mu_a - mu_b) ** 2).sum()), float(np.trace(cov_a + cov_b - 2 * root.real))


def pixel_stats(images: torch.Tensor) -> dict[str, float]:
    """Colour statistics of (N, 3, H, W) images in [-1, 1]; the foreground is every pixel
    that is not near-white (some channel <= 0.9): the emoji sit on white."""
    flat = images.flatten(2)
    foreground = images.permute(0, 2, 3, 1)[images.min(1).values <= 0.9]  # (pixels, 3)
    return {
        "mean_rgb": [round(v, 3) for v in images.mean((0, 2, 3)).tolist()],
        "pixel_std": round(float(images.std()), 3),
        "saturated": round(float((images.abs() > 0.98).float().mean()), 3),
        "image_contrast": round(float(flat.std(2).mean()), 3),
        "foreground_share": round(len(foreground) / (len(images) * images.shape[2] * images.shape[3]), 3),
        "foreground_chroma": round(float((foreground.max(1).values - foreground.min(1).values).mean()), 3),
    }


def parse_option(item: str) -> tuple[str, object]:
    """``key=value`` -> a scheduler option (``true``/``false`` as booleans, numbers as floats)."""
    key, value = item.split("=")
    if value in ("true", "false"):
        return key, value == "true"
    try:
        return key, float(value)
    except ValueError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dash", default="src/morse_exp/assets/dash_emoji32")
    parser.add_argument("--settings", nargs="+", default=["ddim:10", "ddim:20", "ddim:50"])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="outputs/experiments/emoji32/fid_diagnosis")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dash = load_dash(args.dash)
    extractor = load_extractor("emoji32_autoencoder")
    dataset = OmegaConf.load(Path(__file__).parents[2] / "conf/dataset/emoji32.yaml")
    real = hydra.utils.instantiate(OmegaConf.create({"seed": 0, "dataset": dataset}).dataset).images("train")
    real_features = features(extractor, real)
    rows = [{"setting": "real (train split)", **pixel_stats(real)}]
    print(json.dumps(rows[0]), flush=True)
    for setting in args.settings:
        name, steps, *overrides = setting.split(":")
        options = {"timestep_spacing": "trailing", **dict(parse_option(item) for item in overrides)}
        make = functools.partial(make_scheduler, name, dash.scheduler_config, **options)
        cache = out / f"{setting.replace(':', '_')}_n{args.num}_seed{args.seed}.pt"
        if cache.exists():
            images = torch.load(cache, weights_only=True)
        else:
            images = generate(dash, make,
                              DashSchedule.every_step(int(steps)), args.seed, args.num, batch_size=250,
                              progress=setting).images
            torch.save(images, cache)
        sample_features = features(extractor, images)
        row = {"setting": setting, **pixel_stats(images)}
        mean_term, cov_term = fid_terms(sample_features, real_features)
        row["fid"], row["fid_mean_term"], row["fid_cov_term"] = round(mean_term + cov_term, 1), round(mean_term, 1), round(cov_term, 1)
        for block, columns in BLOCKS.items():
            row[f"fid_{block}"] = round(sum(fid_terms(sample_features[:, columns], real_features[:, columns])), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / f"diagnosis_seed{args.seed}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
