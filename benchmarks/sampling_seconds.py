"""Does LSD hold in wall clock for whole sampling runs? Morse, reuse and every-step Dash timed
in one run, interleaved, per sampler.

    OMP_NUM_THREADS=1 python benchmarks/sampling_seconds.py [--samplers ddim ddpm] [--budget 12]
        [--batch 500] [--repeats 3] [--dash DIR]

Each sampler's shipped 32 px Dot (``src/morse_exp/assets/dot_emoji32_<sampler>``, on the base it
was trained with) at stride 3, with the schedule evaluate gives the budget at the stored N; the
baseline runs every step at round(budget) steps. Per repeat the three loops run back to back on
the same noise (sample i's generator, as in evaluate) and the report uses each loop's median, so
a drift of the machine's load hits all three. From the medians:

- seconds per Dash step in the loop: baseline seconds / its steps;
- Morse's LSD in wall clock: Morse seconds / that, against the LSD evaluate charges it
  (Dash steps + Dot steps / N); their ratio is how far a seconds speedup will read from the
  LSD one for this schedule (1.0: LSD holds);
- N in the loop: the Dash step's seconds / a Dot step's, (Morse - reuse) seconds / Dot steps
  (reuse takes the same steps with free Dot steps), against the stored N.

Machine load still moves single points: run with nothing else on the cores, or read the ratios.
Writes a JSON record to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from typing import Any

import hydra
import torch

from morse_exp import asset_path
from morse_exp.checkpoints import load_dot_weights
from morse_exp.cli import compose_config
from morse_exp.evaluate import schedule_for
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.seeding import sample_generators
from morse_exp.speed import machine_identity, machine_speed_ratio


def sampler_config(sampler: str, dash_dir: str | None) -> Any:
    """evaluate's config for ``sampler``'s shipped Dot on the 32 px Dash, stride 3."""
    dot_dir = asset_path(f"dot_emoji32_{sampler}")
    with open(f"{dot_dir}/dot.json") as file:
        base = json.load(file).get("dot_base", "eps")
    overrides = ["model=unet_emoji32", f"scheduler={sampler}", "dot=slim", f"dot.base={base}",
                 "jump_stride=stride3", f"dot_checkpoint={dot_dir}"]
    if sampler == "ddim":
        overrides.append("scheduler.use_clipped_model_output=true")
    if dash_dir is not None:
        overrides.append(f"model.pretrained={dash_dir}")
    with tempfile.TemporaryDirectory() as run_dir:
        return compose_config("evaluate", overrides, run_dir)


@torch.no_grad()
def time_sampler(sampler: str, budget: float, batch: int, repeats: int, dash_dir: str | None) -> dict[str, Any]:
    """Medians of the three loops' seconds for one sampler and what follows from them."""
    cfg = sampler_config(sampler, dash_dir)
    dash = hydra.utils.instantiate(cfg.model).eval()
    dot = hydra.utils.instantiate(cfg.dot)(dash=dash).eval()
    load_dot_weights(dot, cfg.dot_checkpoint)
    speed_ratio, _, _ = machine_speed_ratio(dash, dot, batch, "cpu", "32", cfg.paths.cache_dir)
    make_scheduler = hydra.utils.instantiate(cfg.scheduler)
    jump = hydra.utils.instantiate(cfg.jump_stride)
    morse = schedule_for("morse", budget, jump, speed_ratio)
    loops = {"baseline": (DashSchedule.every_step(round(budget)), None), "reuse": (morse, None), "morse": (morse, dot)}
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, (schedule, residual) in loops.items():
            _, stats = sample(dash, make_scheduler(base_config=dash.scheduler_config), schedule,
                              sample_generators(cfg.seed, range(batch)), dot=residual)
            seconds[name].append(stats.seconds)
    median = {name: statistics.median(times[1:]) for name, times in seconds.items()}
    dash_step = median["baseline"] / round(budget)
    dot_step = (median["morse"] - median["reuse"]) / morse.dot_calls
    charged = morse.lsd(speed_ratio)
    wall = median["morse"] / dash_step
    return {
        "sampler": sampler, "budget": budget, "batch": batch, "repeats": repeats,
        "morse_steps": morse.num_steps, "dash_calls": morse.dash_calls, "dot_calls": morse.dot_calls,
        "stored_speed_ratio": speed_ratio, "seconds": median, "dash_step_seconds": dash_step,
        "dot_step_seconds": dot_step, "loop_speed_ratio": dash_step / dot_step if dot_step > 0 else None,
        "morse_lsd_charged": charged, "morse_lsd_wall_clock": wall, "wall_over_charged": wall / charged,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=["ddim", "ddpm"])
    parser.add_argument("--budget", type=float, default=12.0, help="Morse's LSD budget (12: the reduced sweep's larger)")
    parser.add_argument("--batch", type=int, default=500, help="samples per loop (evaluate's batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dash", default=None, help="a Dash directory instead of the shipped 32 px one")
    args = parser.parse_args(argv)
    rows = []
    for sampler in args.samplers:
        row = time_sampler(sampler, args.budget, args.batch, args.repeats, args.dash)
        rows.append(row)
        print(f"{sampler}: Morse {row['dash_calls']} Dash + {row['dot_calls']} Dot steps, charged "
              f"{row['morse_lsd_charged']:.2f} LSD, {row['morse_lsd_wall_clock']:.2f} in wall clock "
              f"({row['wall_over_charged']:.3f}x); N stored {row['stored_speed_ratio']:.2f}, "
              f"in the loop {row['loop_speed_ratio'] or float('nan'):.2f}", flush=True)
    print(json.dumps({"machine": machine_identity("cpu"), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
