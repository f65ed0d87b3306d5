"""Summarise a ``benchmarks/gpu_check.sh`` output directory as markdown (stdout).

    python benchmarks/gpu_summary.py outputs/gpu_check
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: Path) -> str:
    record = json.loads((out / "train" / "dot" / "dot.json").read_text())
    speed = json.loads((out / "evaluate" / "speed_ratio.json").read_text())
    bench = json.loads((out / "bench.json").read_text())
    points = [json.loads(line) for line in (out / "evaluate" / "results.jsonl").read_text().splitlines()]
    lines = [
        f"# GPU check: {bench['machine']}",
        "",
        (f"Command: `bash benchmarks/gpu_check.sh` (ddpm_cifar10 architecture, random weights; "
         f"Dot {bench['dot_config']})."),
        "",
        (f"- train ({record['run_config']['trainer']['precision']}): {record['steps']} steps in "
         f"{record['fit_seconds']:.1f} s = {record['fit_seconds'] / max(1, record['steps']):.3f} s/step "
         f"(batch {record['run_config']['dataset']['batch_size']}, validation included)"),
        (f"- evaluate's N at its start ({speed.get('precision', '32')}, batch {speed['batch_size']}): "
         f"{speed['speed_ratio']:.2f} (Dash {speed['dash_seconds']:.4f} s, Dot {speed['dot_seconds']:.4f} s per step)"),
        "",
        "| method | LSD | steps (Dash + Dot) | samples | seconds | s per sample-step | FID (stand-in extractor) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        per_step = p["seconds"] / (p["num_samples"] * p["num_steps"])
        lines.append(f"| {p['method']} | {p['lsd']:.2f} | {p['num_steps']} ({p['dash_calls']} + {p['dot_calls']}) | "
                     f"{p['num_samples']} | {p['seconds']:.2f} | {per_step:.2e} | {p['fid']:.2f} |")
    lines += ["", f"Bench ({bench.get('precision', '32')}):", "", "| batch | Dash s/step | Dot s/step | N |",
              "|---:|---:|---:|---:|"]
    for batch, s in bench["dot_speed_ratio"].items():
        lines.append(f"| {batch} | {s['dash_seconds']:.4f} | {s['dot_seconds']:.4f} | {s['ratio']:.2f} |")
    memory = bench["memory"]
    peaks = {k: v for k, v in memory.items() if "peak" in k}
    lines += ["", (f"Parameters: Dash {memory['dash_parameter_bytes'] / 2**20:.1f} MiB, Dash + Dot "
                   f"{memory['dash_plus_dot_parameter_bytes'] / 2**20:.1f} MiB; peak step memory: {peaks}")]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
