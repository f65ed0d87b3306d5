"""Test helpers shared by the test modules: tiny diffusers models, Hydra composition, and entry
points run as real command-line processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel

import morse_exp  # noqa: F401  (registers the ${asset:...} resolver)
from morse_exp.cli import compose_config  # noqa: F401  (the test modules compose through helpers)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def tiny_unet(
    sample_size: int = 8, channels: int = 1, seed: int = 0, widths: tuple[int, int] = (8, 16),
    num_class_embeds: int | None = None,
) -> UNet2DModel:
    """A 2-level UNet2DModel (attention at level 2) with random weights; class-conditional
    with ``num_class_embeds``."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
        num_class_embeds=num_class_embeds,
    ).eval()


def save_tiny_dash(directory: Path, seed: int) -> Path:
    """:func:`tiny_unet` + a DDPM scheduler config in diffusers' bare-model directory layout."""
    tiny_unet(seed=seed).save_pretrained(directory, safe_serialization=True)
    DDPMScheduler().save_config(directory)
    return directory


def make_crop_folder(root: Path, count: int = 240, size: int = 16) -> Path:
    """``count`` random size x size RGB crops of scikit-learn's two bundled photos, as PNG."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root.mkdir(parents=True)
    photos = load_sample_images().images  # two 427 x 640 RGB photos, shipped with sklearn
    rng = np.random.default_rng(0)
    for k in range(count):
        photo = photos[k % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        Image.fromarray(photo[y : y + size, x : x + size]).save(root / f"{k:04d}.png")
    return root


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MORSE_DEBUG", None)
    env.update(extra)
    return env


DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from importlib import import_module

    cases = json.load(open(sys.argv[1]))
    mains = {entry: import_module(f"morse_exp.{entry}").main for entry in {c["entry"] for c in cases}}  # once
    codes = []
    for case in cases:
        pid = os.fork()
        if pid == 0:  # child: one `python -m morse_exp.<entry> <argv>` run
            for key in case["unset"]:
                os.environ.pop(key, None)
            os.environ.update(case["env"])
            os.chdir(case["cwd"])
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(os.open(case["out"] + ".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(case["out"] + ".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.argv = [f"morse_exp.{case['entry']}", *case["argv"]]
            mains[case["entry"]]()
            sys.exit(0)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print(json.dumps(codes))
    """
)


def run_cli_cases(work: Path, cases: dict[str, dict[str, Any]], entry: str = "train") -> dict[str, dict[str, Any]]:
    """Run each case as its own ``python -m morse_exp.<entry>`` process (forked from one that
    imported the entry points once; a case's own ``entry`` wins); {name: {rc, stdout, stderr}}."""
    specs = []
    for name, case in cases.items():
        specs.append({
            "entry": case.get("entry", entry), "argv": case["argv"], "env": case.get("env", {}), "unset": case.get("unset", []),
            "cwd": str(case.get("cwd", work)), "out": str(work / name),
        })
    (work / "cases.json").write_text(json.dumps(specs))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(work / "cases.json")],
        check=False, env=subprocess_env(HF_HOME=str(work / "hf")), cwd=work, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        name: {
            "rc": rc,
            "stdout": (work / f"{name}.stdout").read_text(),
            "stderr": (work / f"{name}.stderr").read_text(),
        }
        for name, rc in zip(cases, codes, strict=True)
    }
