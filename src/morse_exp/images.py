"""Image helpers: sample grids as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torchvision.utils import save_image

from morse_exp.atomic import write_atomic


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write (N, C, H, W) images in [-1, 1] as one PNG grid, upscaled to at least 32 px a tile
    (atomically: a link at ``path`` is replaced, never written through)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5
    scale = max(1, 32 // images.shape[-1])
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or max(1, int(len(images) ** 0.5))
    buffer = io.BytesIO()
    save_image(images, buffer, nrow=nrow, padding=2, pad_value=1.0, format="png")
    write_atomic(path, buffer.getvalue())
    return path
