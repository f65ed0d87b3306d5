"""Per Dot step of a stretch: the eps error of reuse, of the x0 base alone and of a trained Dot.

Held-out emoji are noised to jump point s of n fine steps by the forward process, Dash runs
there, and the sampler steps on with the Dot's own estimates (as at inference) through the
stretch's K - 1 Dot steps (``MorseModule.walk_stretch``, the training code). At each Dot step,
the mean squared error against Dash's own estimate of: reuse (Dash's z_ts kept), the x0 base
(``dot.base_estimate("x0", ...)``: the noise Dash's data estimate at s implies at the current
state) and the Dot (its residual on its own base). Prints one JSON row per Dot step and writes
``base_errors.json``.
Usage (one thread, repository root):
  python experiments/emoji32/base_errors.py --dot outputs/experiments/emoji32/train_ddpm_stride3_own_relative/dot
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from dot_errors import trained_module  # this folder's script (sys.path[0] when run as a script)
from torch import nn

from morse_exp.dot import base_estimate
from morse_exp.module import StretchStep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", required=True, help="a saved Dot directory (its sampler and gaps are used)")
    parser.add_argument("--model", default="unet_emoji32", help="the conf/model/ config of its Dash")
    parser.add_argument("--steps", type=int, nargs="+", default=[12, 27], help="fine step counts n")
    parser.add_argument("--points", type=int, default=7, help="jump points per n, spread over 0..n-2")
    parser.add_argument("--num", type=int, default=64, help="held-out images per jump point")
    parser.add_argument("--out", default="outputs/experiments/emoji32/base_errors")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    module, datamodule = trained_module(args.dot, args.model, out)
    images = datamodule.images("heldout", limit=args.num)
    rows = []

    def mse(estimate: torch.Tensor, step: StretchStep) -> float:
        return float(nn.functional.mse_loss(estimate.float(), step.target.float()))

    with torch.no_grad():
        for n in args.steps:
            for s in range(0, n - 1, max(1, (n - 1) // args.points)):
                def visit(step: StretchStep, n: int = n, s: int = s) -> torch.Tensor:
                    estimate = module.dot_estimate(step)
                    x0_base = base_estimate("x0", step.x_ts, step.z_ts, step.t_s, step.x_ti, step.t_i, module.alphas_cumprod)
                    rows.append({"n": n, "s": s, "t_s": int(step.t_s), "t_i": int(step.t_i), "reuse": mse(step.z_ts, step),
                                 "x0_base": mse(x0_base, step), "dot": mse(estimate, step)})
                    print(json.dumps(rows[-1]), flush=True)
                    return estimate

                module.walk_stretch(images, None, n, s, torch.Generator().manual_seed(s), visit)
    (out / "base_errors.json").write_text(json.dumps({"dot": args.dot, "rows": rows}, indent=1))
    print(f"wrote {out / 'base_errors.json'}")


if __name__ == "__main__":
    main()
