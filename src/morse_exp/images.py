"""Image helpers: sample grids as PNG."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from morse_exp.atomic import write_atomic


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, caption: str | None = None) -> Path:
    """Write (N, C, H, W) images in [-1, 1] as one PNG grid, upscaled to at least 32 px a tile,
    under an optional ``caption`` strip (atomically: a link at ``path`` is replaced, never
    written through)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().cpu().clamp(-1, 1) / 2 + 0.5
    scale = max(1, 32 // images.shape[-1])
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or max(1, int(len(images) ** 0.5))
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=1.0)
    picture = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    if caption:  # a white strip above the grid with the caption in PIL's default font (~6 px a character)
        lines = textwrap.wrap(caption, max(8, picture.width // 6))
        strip = Image.new("RGB", (picture.width, 14 * len(lines)), "white")
        ImageDraw.Draw(strip).multiline_text((2, 1), "\n".join(lines), fill="black")
        framed = Image.new("RGB", (picture.width, strip.height + picture.height), "white")
        framed.paste(strip, (0, 0))
        framed.paste(picture.convert("RGB"), (0, strip.height))
        picture = framed
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return path

