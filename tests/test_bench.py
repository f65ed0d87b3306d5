"""The benchmark runs end to end on a tiny Dash and measures N for Dot and for each rival."""

from __future__ import annotations

import json

import torch

from morse_exp.bench import run
from morse_exp.speed import machine_identity


def test_bench_writes_n_for_dot_and_deepcache(tiny_dash_dir, tmp_path, run_config):
    out = tmp_path / "bench.json"
    cfg = run_config("bench", [
        f"model.pretrained={tiny_dash_dir}", "dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2", "dot.num_down=1",
        "batch_sizes=[1,4]", "repeats=1", "overhead_steps=2", "overhead_batch_size=2", "rivals=[deepcache]",
        "deepcache.depth=2", f"output_file={out}",
    ], tmp_path / "run")
    result, _ = run(cfg)
    assert json.loads(out.read_text()) == result
    assert set(result["dot_speed_ratio"]) == {"1", "4"}
    deepcache = result["rival_speed_ratio"]["deepcache"]
    assert deepcache["config"] == {"method": "deepcache", "depth": 2, "interval": 3}
    assert all(s["ratio"] > 0 and s["dot_seconds"] > 0 for s in deepcache["speed_ratio"].values())


def test_stored_n_is_keyed_by_the_cpu_vector_instructions():
    """VMs of one processor name differ (AVX2 or AVX-512, N 7.7 vs 9-12 at batch 500 on the
    emoji32 Dash): a stored N must not travel between them."""
    assert machine_identity("cpu")["processor"].endswith(f"({torch.backends.cpu.get_cpu_capability()})")
