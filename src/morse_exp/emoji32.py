"""Build the embedded 32 px task: Noto Color Emoji's glyphs as 32x32 RGB images.

``python -m morse_exp.emoji32 [--font PATH] [--out PATH]`` reads the colour bitmaps (PNG
strikes in the CBDT table) of Google's Noto Color Emoji font, as Debian's
``fonts-noto-color-emoji`` installs it (``apt-get install fonts-noto-color-emoji``), and
writes one compressed npz: ``images`` (N, 32, 32, 3) uint8 and ``names`` (N,) the glyph
names, sorted by name. Each glyph (136x128 px RGBA) is centred on a white square, reduced
to 32x32 by area averaging, and exact duplicates after the reduction are dropped. The same
font version gives the same file byte for byte. The artwork is Apache-2.0 (Google's
noto-emoji); ``SOURCE.md`` beside the shipped file records the version and licence.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
SHIPPED = Path(__file__).parent / "assets" / "emoji32" / "emoji32.npz"
SIZE = 32


def glyph_images(font_path: str | Path) -> dict[str, np.ndarray]:
    """Every colour glyph of the font as a (SIZE, SIZE, 3) uint8 image on white, by glyph name."""
    from fontTools.ttLib import TTFont
    from PIL import Image

    font = TTFont(str(font_path))
    if "CBDT" not in font:
        raise ValueError(f"font {font_path} has no CBDT colour bitmaps: use Noto Color Emoji")
    strike = font["CBDT"].strikeData[0]
    images = {}
    for name in sorted(strike):
        with Image.open(io.BytesIO(strike[name].imageData)) as glyph:
            rgba = glyph.convert("RGBA")
        side = max(rgba.size)
        canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        canvas.alpha_composite(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
        small = canvas.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX)
        images[name] = np.asarray(small, dtype=np.uint8)
    return images


def build(font_path: str | Path, out_path: str | Path) -> tuple[int, int]:
    """Write the npz; returns (glyphs read, distinct images written)."""
    images = glyph_images(font_path)
    kept: dict[bytes, str] = {}
    for name, image in images.items():
        kept.setdefault(hashlib.sha256(image.tobytes()).digest(), name)
    names = sorted(kept.values())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez_compressed stamps the zip entries with the current time; fixed stamps keep
    # the file identical from one build to the next.
    arrays = {"images": np.stack([images[n] for n in names]), "names": np.array(names)}
    tmp = out_path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    tmp.replace(out_path)
    return len(images), len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", default=DEFAULT_FONT, help="NotoColorEmoji.ttf (default: Debian's path)")
    parser.add_argument("--out", default=str(SHIPPED), help="npz to write (default: the shipped file)")
    args = parser.parse_args()
    if not Path(args.font).is_file():
        parser.exit(2, f"error: no font at --font {args.font}: apt-get install fonts-noto-color-emoji\n")
    read, written = build(args.font, args.out)
    print(f"{written} distinct 32x32 images (of {read} glyphs) written to {args.out}")


if __name__ == "__main__":
    main()
