"""A random-weight stand-in for the GPU check: nothing can be downloaded on the device machines.

Writes ``<out>/dash`` (the ``ddpm_cifar10`` architecture, conf/architecture/unet_cifar10.yaml,
random weights, DDPM's linear betas) and ``<out>/images`` (random 32x32 RGB PNGs: Dot trains
against the Dash on them; what matters here is the cost, not the quality).

    python benchmarks/gpu_standin.py outputs/gpu_check/standin [--images 512]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    unet = instantiate(OmegaConf.load(REPO / "conf" / "architecture" / "unet_cifar10.yaml"))
    unet.save_pretrained(args.out / "dash", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_config(args.out / "dash")
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(args.images):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{index:05d}.png")
    print(f"stand-in Dash ({sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M parameters) and "
          f"{args.images} images under {args.out}")


if __name__ == "__main__":
    main()
