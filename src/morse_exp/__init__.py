"""morse-exp: reference implementation of Morse (Dash + Dot dual sampling) for diffusers models."""

from pathlib import Path

from omegaconf import OmegaConf

ASSETS_DIR = Path(__file__).parent / "assets"


def asset_path(name: str) -> str:
    """Absolute path of a file or directory shipped in ``morse_exp/assets``."""
    return str(ASSETS_DIR / name)


if not OmegaConf.has_resolver("asset"):
    OmegaConf.register_new_resolver("asset", asset_path)
