"""Bad input through the real command lines: exit code 2, one ``error:`` line naming the key or
file, no traceback, nothing already in the run directory changed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli_cases

EARLIER = b'{"method": "baseline", "lsd_budget": 3.0, "config_hash": "earlier"}\n'
EVALUATE = ["methods=[baseline,reuse]", "logger=none", "metric.num_samples=100", "batch_size=100"]

CASES: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (entry point, arguments, words the error line must contain)
    "budgets_not_a_list": ("evaluate", ["lsd_budgets=5"], ["lsd_budgets=5", "list"]),
    "budget_huge": ("evaluate", ["lsd_budgets=[3,1e9]"], ["lsd_budgets", "10000"]),
    "budget_text": ("evaluate", ["lsd_budgets=[3,abc]"], ["lsd_budgets", "abc"]),
    "samples_text": ("evaluate", ["metric.num_samples=abc"], ["metric.num_samples='abc'", "integer"]),
    "sample_count_zero": ("sample", ["num_samples=0", "method=baseline"], ["num_samples=0", "integer >= 1"]),
    "batch_zero": ("evaluate", ["batch_size=0"], ["batch_size=0"]),
    "batch_negative": ("evaluate", ["batch_size=-4"], ["batch_size=-4"]),
    "seed_negative": ("evaluate", ["seed=-1"], ["seed=-1"]),
    "speed_ratio_zero": ("evaluate", ["speed_ratio=0"], ["speed_ratio=0"]),
    "speed_ratio_text": ("evaluate", ["speed_ratio=abc"], ["speed_ratio", "abc"]),
    "no_gpu": ("evaluate", ["device=cuda"], ["device=cuda", "no CUDA GPU"]),
    "dot_share_outside": ("evaluate", ["jump_stride=dot_share", "jump_stride.dot_share=1.5"], ["dot_share=1.5"]),
    "budget_below_dash_and_dot": ("evaluate", ["jump_stride=dot_share", "speed_ratio=4", "lsd_budgets=[1.1]"],
                                  ["1.1", "one Dash and one Dot step"]),
    "deepcache_depth_deeper_than_unet": ("evaluate", ["methods=[baseline,deepcache]", "deepcache.depth=9"],
                                         ["deepcache.depth=9", "levels"]),
    "deepcache_interval_zero": ("evaluate", ["methods=[baseline,deepcache]", "deepcache.interval=0"],
                                ["deepcache.interval=0", "integer >= 1"]),
    "deepcache_speed_ratio_text": ("evaluate", ["deepcache_speed_ratio=abc"], ["deepcache_speed_ratio='abc'"]),
    "stitch_fraction_outside": ("evaluate", ["methods=[baseline,stitch]", "stitch.fraction=1.5",
                                             "stitch.small.pretrained=${model.pretrained}"], ["stitch.fraction=1.5", "[0, 1]"]),
    "stacked_without_a_dot": ("evaluate", ["methods=[baseline,morse_deepcache]"],
                              ["method 'morse_deepcache' needs a trained Dot", "dot_checkpoint="]),
    "stitch_without_small_model": ("evaluate", ["methods=[baseline,stitch]"], ["stitch.small.pretrained", "not set"]),
    "fit_extractor_without_gpu": ("fit_extractor", ["device=cuda"], ["device=cuda", "no CUDA GPU"]),
    "search_budget_below_one_dash_step": ("search", ["lsd_budgets=[0.5]"], ["lsd_budgets", "0.5"]),
    "search_psnr_with_stochastic_sampler": ("search", ["scheduler=ddpm"], ["objective=psnr", "ddpm", "objective=fid"]),
    "folder_without_root": ("evaluate", ["dataset=image_folder"], ["dataset.root"]),
    "folder_metric_without_extractor": ("evaluate", ["metric=image_folder"], ["metric.extractor", "fit_extractor"]),
    "garbage_line": ("evaluate", [], ["results.jsonl:2", "not valid JSON"]),
    "results_link": ("evaluate", [], ["results.jsonl", "symbolic link"]),
    "lr_text": ("train", ["module.lr=abc"], ["module.lr"]),
    "no_steps": ("train", ["trainer.max_steps=0"], ["trainer.max_steps=0"]),
    "batch_above_split": ("train", ["dataset.batch_size=5000"], ["dataset.batch_size=5000", "1437"]),
    "corrupt_checkpoint": ("train", ["ckpt_path=last"], ["ckpt_path=last", "not a valid checkpoint"]),
    "wrong_image_size": ("train", ["dataset=emoji32"], ["emoji32 images have shape (3, 32, 32)", "(1, 8, 8)"]),
    "train_without_gpu": ("train", ["trainer=gpu"], ["trainer.accelerator=gpu", "no CUDA GPU"]),
    "bad_dot_record": ("evaluate", ["dot_checkpoint={work}/bad_dot", "methods=[morse]"], ["dot.json", "not valid JSON"]),
    "sample_batch_zero": ("sample", ["batch_size=0", "method=baseline"], ["batch_size=0"]),
    "sample_budget_text": ("sample", ["lsd_budget=abc", "method=baseline"], ["lsd_budget='abc'"]),
    "sample_method": ("sample", ["method=fast"], ["method='fast'", "baseline"]),
    "run_dir_under_file": ("train", ["trainer.max_steps=1", "hydra.run.dir={work}/run_dir_under_file/run/results.jsonl/run"],
                           ["hydra.run.dir=", "results.jsonl/run", "cannot be written"]),
    "sweep_dir_under_file": ("evaluate", ["-m", "hydra.sweep.dir={work}/sweep_dir_under_file/run/results.jsonl"],
                             ["hydra.sweep.dir=", "cannot be written"]),
    "diverging": ("train", ["module.lr=1e30", "trainer.max_steps=30", "module.warmup_steps=1"],
                  ["diverged", "module.lr"]),
}


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("bad_inputs")
    cases, before = {}, {}
    for name, (entry, argv, _) in CASES.items():
        run_dir = work / name / "run"
        run_dir.mkdir(parents=True)
        earlier = EARLIER + (b"not json at all\n" + EARLIER if name == "garbage_line" else b"")
        if name == "corrupt_checkpoint":  # a last.ckpt cut short by a crash
            (run_dir / "checkpoints").mkdir()
            (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
        if name == "results_link":  # results.jsonl links to a file outside the run directory
            (work / name / "outside.jsonl").write_bytes(earlier)
            (run_dir / "results.jsonl").symlink_to(work / name / "outside.jsonl")
        else:
            (run_dir / "results.jsonl").write_bytes(earlier)
        common = {"evaluate": EVALUATE, "train": ["logger=none"], "sample": ["num_samples=4"],
                  "search": ["num_samples=4"], "fit_extractor": ["steps=1"]}[entry]
        argv = [arg.replace("{work}", str(work)) for arg in argv]
        own_dir = [] if any(arg.startswith("hydra.") for arg in argv) else [f"hydra.run.dir={run_dir}"]
        flags = [arg for arg in argv if arg.startswith("-")]  # e.g. -m: before the overrides
        overrides = [*common, *(arg for arg in argv if arg not in flags), *own_dir, f"paths.cache_dir={work / 'cache'}"]
        cases[name] = {"entry": entry, "argv": [*flags, *overrides]}
        before[name] = checksums(work / name)
    (work / "bad_dot").mkdir()
    (work / "bad_dot" / "dot.json").write_text("{not json")
    outcome = run_cli_cases(work, cases)
    for name in CASES:
        after = checksums(work / name)  # Hydra adds run/.hydra/; earlier files must stay as they were
        outcome[name]["unchanged"] = {key: after.get(key) for key in before[name]} == before[name]
    return outcome


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_with_exit_2_and_leaves_the_run_dir_alone(results, name):
    result, words = results[name], CASES[name][2]
    assert result["rc"] == 2, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"], result["stderr"][-2000:]
    line = result["stderr"].strip().splitlines()[-1]
    assert line.startswith("error: ") and all(word in line for word in words), line
    assert result["unchanged"]


def test_a_refused_run_leaves_no_empty_run_dir_behind(tmp_path):
    """Hydra makes <cwd>/outputs/train/runs/<time>/.hydra before the run starts; a run refused
    for bad input takes the directory it made away again."""
    cases = {"refused": {"entry": "train", "argv": ["model.pretrained=/nonexistent", "logger=none"],
                         "cwd": tmp_path}}
    result = run_cli_cases(tmp_path, cases)["refused"]
    assert result["rc"] == 2, result["stderr"][-2000:]
    runs = tmp_path / "outputs" / "train" / "runs"
    assert runs.is_dir() and not any(runs.iterdir())
