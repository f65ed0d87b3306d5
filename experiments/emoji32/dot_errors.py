"""Where along the trajectory does a trained Dot beat reuse? Its error per jump point.

For each fine step count n and each jump point s = 0..n-2, the held-out emoji are noised to
step s by the forward process (``--states sampled``: Morse's own sampler runs from noise to
step s instead, the states it meets at inference), Dash runs there, and the Dot then bridges the following K - 1
steps exactly as training and validation do (``MorseModule.stretch_errors``, the same code): the
mean squared error of Dot's eps estimate and of reuse (Dash's estimate at s kept) against
Dash's own estimate at those steps. ``--stepping``: the state after a Dot step is reached with
the Dot's estimate (``own``, as at inference), with reuse's (``reuse``, as ``stretches=cached``
trains) or with Dash's (``teacher``): on teacher-forced states a Dot can read the previous
step's target off the state. Prints one row per (n, s) and writes ``dot_errors.json``
and ``dot_errors.png`` (reuse / Dot MSE against the position s / n: above 1, Dot helps).
Usage (one thread, repository root):
  python experiments/emoji32/dot_errors.py --dot src/morse_exp/assets/dot_emoji32_ddim --steps 8 12 24
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from morse_exp.checkpoints import load_dot_weights, read_record
from morse_exp.cli import compose_config
from morse_exp.module import STEPPINGS, MorseModule
from morse_exp.train import build


def trained_module(dot: str, model: str, out: Path, *overrides: str) -> tuple[MorseModule, Any]:
    """The training module of the Dot saved in ``dot`` (its model, sampler with its options, gaps
    and base; ``overrides`` on top), with that Dot's weights loaded, in eval mode, and the image
    data module."""
    record = read_record(dot)
    objects = build(compose_config("train", [
        f"model={model}", f"scheduler={record['scheduler']}",
        *(f"scheduler.{key}={value}" for key, value in record["scheduler_options"].items()),
        f"module.max_gap={record['coverage']['max_gap']}", f"dot.base={record.get('dot_base', 'eps')}", *overrides,
    ], out))
    load_dot_weights(objects["dot"], dot)
    return objects["module"].eval(), objects["datamodule"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", default="src/morse_exp/assets/dot_emoji32_ddim", help="a saved Dot directory")
    parser.add_argument("--model", default="unet_emoji32", help="the conf/model/ config of its Dash")
    parser.add_argument("--dot-config", help="the conf/dot/ config it was built with (default: the model's)")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 12, 24], help="fine step counts n")
    parser.add_argument("--num", type=int, default=128, help="held-out images per jump point")
    parser.add_argument("--states", choices=["forward", "sampled"], default="forward",
                        help="jump-point states: the data's forward process, or Morse's own sampler from noise")
    parser.add_argument("--stepping", choices=STEPPINGS, default="own",
                        help="what the sampler steps on with between Dot steps: the Dot's, reuse's or Dash's estimate")
    parser.add_argument("--out", default="outputs/experiments/emoji32/dot_errors")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    module, datamodule = trained_module(args.dot, args.model, out, f"module.jump_states={args.states}",
                                        *([f"dot={args.dot_config}"] if args.dot_config else []))
    images = datamodule.images("heldout", limit=args.num)
    rows = []
    with torch.no_grad():
        for n in args.steps:
            for s in range(n - 1):
                dot_errors, reuse_errors = (errors.tolist() for errors in module.stretch_errors(
                    images, None, n, s, torch.Generator().manual_seed(s), stepping=args.stepping))
                dot_mse, reuse_mse = sum(dot_errors) / len(dot_errors), sum(reuse_errors) / len(reuse_errors)
                rows.append({"n": n, "s": s, "dot_mse": dot_mse, "reuse_mse": reuse_mse, "gain": reuse_mse / dot_mse,
                             "gain_per_dot_step": [r / d for r, d in zip(reuse_errors, dot_errors, strict=True)]})
                print(json.dumps(rows[-1]), flush=True)
    (out / "dot_errors.json").write_text(json.dumps(
        {"dot": args.dot, "states": args.states, "stepping": args.stepping, "rows": rows}, indent=1))
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for n in args.steps:
        points = [row for row in rows if row["n"] == n]
        axes.plot([row["s"] / n for row in points], [row["gain"] for row in points], marker="o", label=f"n = {n}")
    axes.axhline(1.0, color="black", linewidth=1, linestyle="--")
    axes.set_xlabel("jump point s / n (0: pure noise, 1: the image)")
    axes.set_ylabel("reuse MSE / Dot MSE (above 1: Dot helps)")
    axes.set_title(f"Dot vs reuse per jump point, {args.num} held-out images, {args.states} states, "
                   f"{args.stepping} stepping", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.savefig(out / "dot_errors.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'dot_errors.json'} and {out / 'dot_errors.png'}")


if __name__ == "__main__":
    main()
