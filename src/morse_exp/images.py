"""Image helpers: sample grids as PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write (N, C, H, W) images in [-1, 1] as one PNG grid, upscaled to at least 32 px a tile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5
    scale = max(1, 32 // images.shape[-1])
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or max(1, int(len(images) ** 0.5))
    save_image(images, path, nrow=nrow, padding=2, pad_value=1.0)
    return path
