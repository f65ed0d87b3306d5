"""Where along the trajectory does the Dot cost FID? The oracle Dot on one part, the trained Dot on the other.

Morse's FID lies between the oracle Dot's (a perfect Dot: Dash itself at every Dot step) and
reuse's (no Dot). This script splits the trajectory at a timestep T and gives the jump
points above T (high noise, early) to one Dot and those at or below T to the other:
"oracle early" runs the oracle where t_s > T and the trained Dot after; "oracle late" the
reverse. If oracle-late closes most of the gap from Morse to the oracle, the Dot's late
residuals are what FID pays for. Same sampler, schedule, seeds and metric as
``python -m morse_exp.evaluate experiment=emoji32_main`` (its config, composed here); the
schedule is the jump pattern's at the given LSD budget with this machine's stored N.
Prints one row per variant and writes ``oracle_split.json`` and ``oracle_split.png``.
Usage (one thread, repository root):
  python experiments/emoji32/oracle_split.py --dot src/morse_exp/assets/dot_emoji32_ddim --budget 6 [overrides]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import hydra
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from morse_exp.checkpoints import load_dot_weights
from morse_exp.cli import compose_config
from morse_exp.dot import OracleDot
from morse_exp.evaluate import resolve_speed_ratio
from morse_exp.generation import generate


class SplitDot(nn.Module):
    """``early`` at jump points t_s > ``split``, ``late`` at the others (None: reuse, residual 0)."""

    def __init__(self, early: nn.Module | None, late: nn.Module | None, split: float) -> None:
        super().__init__()
        self.early, self.late, self.split = early, late, split

    def forward(self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Any, t_i: Any, cond: Any = None) -> Tensor:
        dot = self.early if float(torch.as_tensor(t_s).reshape(-1)[0]) > self.split else self.late
        return torch.zeros_like(z_ts) if dot is None else dot(x_ts, x_ti, z_ts, t_s, t_i, cond)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", default="src/morse_exp/assets/dot_emoji32_ddim", help="a saved Dot directory")
    parser.add_argument("--budget", type=float, default=6.0, help="LSD budget of the Morse schedule")
    parser.add_argument("--splits", type=int, nargs="+", default=[750, 500, 250], help="split timesteps T")
    parser.add_argument("--seed", type=int, default=0, help="seed set (0: the one settings are chosen on)")
    parser.add_argument("--out", default="outputs/experiments/emoji32/oracle_split")
    parser.add_argument("overrides", nargs="*", help="more evaluate overrides, e.g. metric.num_samples=100")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = compose_config("evaluate", ["experiment=emoji32_main", f"dot_checkpoint={args.dot}", f"seed={args.seed}",
                                      *args.overrides], out)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    metric = hydra.utils.instantiate(cfg.metric)(datamodule=datamodule)
    dash = hydra.utils.instantiate(cfg.model).to(cfg.device)
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).to(cfg.device).eval()
    load_dot_weights(dot, args.dot)
    oracle = OracleDot(dash)
    speed_ratio = resolve_speed_ratio(cfg, dash, dot, out, None, given=cfg.speed_ratio)
    schedule = hydra.utils.instantiate(cfg.jump_stride).fit_budget(args.budget, speed_ratio)
    make_scheduler = hydra.utils.instantiate(cfg.scheduler)
    print(f"{args.budget:g} LSD at N = {speed_ratio:.2f}: n = {schedule.num_steps}, Dash at {list(schedule.dash_steps)}")

    variants: dict[str, tuple[nn.Module | None, int | None]] = {"reuse": (None, None), "Morse": (dot, None),
                                                               "oracle": (oracle, None)}
    for split in args.splits:
        variants[f"oracle early (t_s > {split})"] = (SplitDot(oracle, dot, split), split)
        variants[f"oracle late (t_s <= {split})"] = (SplitDot(dot, oracle, split), split)
    rows = []
    for name, (variant, split) in variants.items():
        generated = generate(dash, lambda: make_scheduler(base_config=dash.scheduler_config), schedule, cfg.seed,
                             metric.num_samples, cfg.batch_size, cfg.device, dot=variant, progress=name)
        rows.append({"variant": name, "split": split, "fid": float(metric.compute(generated.images)["fid"])})
        print(json.dumps(rows[-1]), flush=True)
    (out / "oracle_split.json").write_text(json.dumps({
        "dot": args.dot, "budget": args.budget, "speed_ratio": speed_ratio, "num_steps": schedule.num_steps,
        "dash_steps": list(schedule.dash_steps), "seed": cfg.seed, "num_samples": metric.num_samples, "rows": rows,
    }, indent=1))
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for prefix, marker in (("oracle early", "o"), ("oracle late", "s")):
        points = [row for row in rows if row["variant"].startswith(prefix)]
        axes.plot([row["split"] for row in points], [row["fid"] for row in points], marker=marker, label=prefix)
    for row, style in zip(rows[:3], (":", "-", "--"), strict=True):
        axes.axhline(row["fid"], color="grey", linestyle=style, linewidth=1, label=f"{row['variant']} {row['fid']:.1f}")
    axes.invert_xaxis()
    axes.set_xlabel("split timestep T (oracle on t_s > T: early; on t_s <= T: late)")
    axes.set_ylabel(f"FID ({metric.num_samples} samples)")
    axes.set_title(f"Oracle on one part, trained Dot on the other: {args.budget:g} LSD, n = {schedule.num_steps}",
                   fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(out / "oracle_split.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'oracle_split.json'} and {out / 'oracle_split.png'}")


if __name__ == "__main__":
    main()
