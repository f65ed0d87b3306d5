"""The benchmark runs end to end on a tiny Dash and measures N for Dot and for each rival."""

from __future__ import annotations

import json

from morse_exp.bench import run


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
