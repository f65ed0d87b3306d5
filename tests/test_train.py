"""End-to-end tests of ``python -m morse_exp.train`` on a tiny random Dash (CPU, seconds).

Runs that only need the Python API call ``morse_exp.train.run(cfg)`` in this process on a
config composed by Hydra's compose API. Runs whose exit code and stderr matter go through
the real Hydra entry point: DDP as a plain ``python -m morse_exp.train`` subprocess; the
others through one driver subprocess that imports ``morse_exp.train`` once and then forks one
child per case, so each case is a real process (own exit status, own stderr) without paying
the ~10 s import of torch + lightning + diffusers again on these small CI machines.
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import compose_config, run_cli_cases, save_tiny_dash, subprocess_env
from omegaconf import DictConfig
from safetensors.torch import load_file

from morse_exp import atomic, tracking
from morse_exp.evaluate import check_dot_record
from morse_exp.train import build, run

TINY_DOT = ["dot.width=8", "dot.norm_groups=4", "dot.lora_rank=2"]
# digits: 1437 training images; batch 32 with drop_last -> 44 steps per epoch. The fast
# resume test caps an epoch at EPOCH_STEPS batches so that its epochs end every few steps.
EPOCH_STEPS = 4


# ------------------------------------------------------------------------------ helpers
def tiny(dash: Path, steps: int, val_every: int, *extra: str) -> list[str]:
    """Overrides for a tiny run: tiny Dash and Dot, ``steps`` steps, short validations."""
    return [
        f"model.pretrained={dash}", *TINY_DOT, f"trainer.max_steps={steps}",
        "dataset.batch_size=32", f"trainer.val_check_interval={val_every}",
        "+trainer.limit_val_batches=2", "trainer.log_every_n_steps=1", *extra,
    ]


def compose_train(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The train config as ``@hydra.main`` would build it, with its run dir at ``run_dir``."""
    return compose_config("train", overrides, run_dir)


def train(run_dir: Path, overrides: list[str]) -> dict[str, float]:
    metrics, _ = run(compose_train(run_dir, overrides))
    return metrics


def dot_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "dot" / "dot.safetensors")


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` transaction log (W&B header + LevelDB log format)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, chunks, records = 7, 32768, [], []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too small for a header: zero padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
        elif kind == 0:
            chunks = []
    return records


def files_in(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_dash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_dash(tmp_path_factory.mktemp("dash_a"), seed=0)


@pytest.fixture(scope="session")
def other_dash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture as ``tiny_dash``, other random weights."""
    return save_tiny_dash(tmp_path_factory.mktemp("dash_b"), seed=1)


def resume_overrides(dash: Path, steps: int, epoch_steps: int | None) -> list[str]:
    limit = [] if epoch_steps is None else [f"+trainer.limit_train_batches={epoch_steps}"]
    return tiny(dash, steps, epoch_steps or 22, *limit)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dash: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 short epochs of training without interruption (also Dash A's checkpoint below)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(run_dir, resume_overrides(tiny_dash, 2 * EPOCH_STEPS, EPOCH_STEPS))
    return run_dir


@pytest.fixture(scope="module")
def cli(tiny_dash: Path, other_dash: Path, uninterrupted: Path,
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every real-entry-point case of this module, run once: {name: rc/stdout/stderr/dir}."""
    work = tmp_path_factory.mktemp("cli")
    home = work / "home"
    home.mkdir()
    cases: dict[str, dict[str, Any]] = {}
    bad = {
        "stride_zero": "jump_stride.stride=0",
        "stride_text": "jump_stride.stride=abc",
        "stride_one": "jump_stride=dash_only",
        "stride_one_override": "jump_stride.stride=1",
        "dash_missing": "model.pretrained=/nonexistent",
        "dash_offline_hub": "model.pretrained=google/ddpm-cifar10-32",  # HF_HUB_OFFLINE=1, empty HF_HOME
    }
    for name, override in bad.items():
        cases[name] = {"argv": [*tiny(tiny_dash, 2, 2), override, f"hydra.run.dir={work / name / 'run'}"]}
    # A checkpoint of Dash A (the `uninterrupted` run) resumed on Dash B.
    cases["other_dash"] = {"argv": [
        *resume_overrides(other_dash, 2 * EPOCH_STEPS, EPOCH_STEPS),
        f"ckpt_path={uninterrupted / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={work / 'other_dash' / 'run'}",
    ]}
    cases["wandb"] = {  # nothing configured: no key, no netrc, no WANDB_MODE
        "argv": [*tiny(tiny_dash, 3, 3), "logger=wandb", f"hydra.run.dir={work / 'wandb' / 'run'}"],
        "unset": ["WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC"],
        "env": {
            "HOME": str(home), "WANDB_DIR": str(work / "wandb_dir"), "WANDB_CONFIG_DIR": str(home / "cfg"),
            "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_DATA_DIR": str(home / "data"),
            "WANDB_SILENT": "true",
        },
    }
    cases["multirun"] = {"argv": [
        "-m", "jump_stride=stride2,stride3", *tiny(tiny_dash, 2, 2),
        f"hydra.sweep.dir={work / 'multirun' / 'sweep'}",
    ]}
    for name in cases:
        (work / name).mkdir(exist_ok=True)
    results = run_cli_cases(work, cases)
    for name in results:
        results[name]["dir"] = work / name
    return results


def one_line_error(result: dict[str, Any]) -> str:
    lines = result["stderr"].strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


# -------------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    "epoch_steps",
    [EPOCH_STEPS, pytest.param(None, marks=pytest.mark.slow, id="full-epochs")],
    ids=lambda v: f"epoch{v}" if v else "full-epochs",
)
def test_resume_reproduces_uninterrupted_run(
    epoch_steps: int | None, tiny_dash: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """Stopped at an epoch end and resumed with ``ckpt_path=last``: bit-identical Dot weights.

    Fast variant: epochs capped at EPOCH_STEPS batches (K = 2 * EPOCH_STEPS). Slow variant:
    the real 44-step epochs of digits at batch 32 (K = 88). Both stay inside the LR warm-up
    (module.warmup_steps=100): the stopped run's max_steps=K/2 sets a different cosine horizon,
    which the checkpoint restores, so past the warm-up the two runs' learning rates would differ.
    """
    if epoch_steps is None:
        half, reference = 44, tmp_path / "uninterrupted"
        train(reference, resume_overrides(tiny_dash, 2 * half, None))
    else:
        half, reference = epoch_steps, uninterrupted
    run_dir = tmp_path / "interrupted"
    train(run_dir, resume_overrides(tiny_dash, half, epoch_steps))
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert stopped["global_step"] == half
    assert not all(torch.equal(a, b) for a, b in zip(
        dot_weights(run_dir).values(), dot_weights(reference).values(), strict=True
    )), "half a run already matches the full run: the test would prove nothing"

    # the stopped run's clock, set to a day so that the resumed record's count shows it
    assert stopped["callbacks"]["StepProgress"]["run_seconds"] > 0
    stopped["callbacks"]["StepProgress"]["run_seconds"] = day = 86400.0
    torch.save(stopped, run_dir / "checkpoints" / "last.ckpt")
    started = time.perf_counter()
    train(run_dir, [*resume_overrides(tiny_dash, 2 * half, epoch_steps), "ckpt_path=last"])
    resumed_seconds = time.perf_counter() - started
    resumed, expected = dot_weights(run_dir), dot_weights(reference)
    assert resumed.keys() == expected.keys()
    differing = [name for name in expected if not torch.equal(resumed[name], expected[name])]
    assert not differing, (
        f"{len(differing)}/{len(expected)} Dot tensors differ, e.g. {differing[:3]}; the stopped "
        f"run's last.ckpt has epoch={stopped['epoch']} (0 if written at the end of epoch 0)"
    )
    record = json.loads((run_dir / "dot" / "dot.json").read_text())
    assert record["steps"] == 2 * half
    # fit_seconds counts the stopped run's seconds and the resumed run's own part
    assert day < record["fit_seconds"] < day + resumed_seconds


def test_training_killed_at_a_random_step_resumes_bit_identical(tiny_dash: Path, tmp_path: Path) -> None:
    """``kill -9`` at a random moment after the first epoch-end checkpoint (mid-epoch, or while
    a checkpoint is written), then ``ckpt_path=last``: the same Dot weights as a run never
    stopped."""
    overrides = resume_overrides(tiny_dash, 12 * EPOCH_STEPS, EPOCH_STEPS)
    reference = tmp_path / "uninterrupted"
    train(reference, overrides)
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "morse_exp.train", *overrides, f"hydra.run.dir={run_dir}"],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 1.0))
    process.kill()
    assert process.wait() == -signal.SIGKILL, "the run ended before the kill: the test would prove nothing"
    stopped = torch.load(last, map_location="cpu", weights_only=True)["global_step"]

    train(run_dir, [*overrides, "ckpt_path=last"])
    resumed, expected = dot_weights(run_dir), dot_weights(reference)
    differing = [name for name in expected if not torch.equal(resumed[name], expected[name])]
    assert not differing, f"resumed from step {stopped}: {len(differing)}/{len(expected)} Dot tensors differ"


def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_resume_works(
    tiny_dash: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that fails part-way (ENOSPC at the flush) leaves last.ckpt as it was; the run
    then resumes from it and finishes."""
    run_dir = tmp_path / "run"
    train(run_dir, resume_overrides(tiny_dash, EPOCH_STEPS, EPOCH_STEPS))
    good = (run_dir / "checkpoints" / "last.ckpt").read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(run_dir, [*resume_overrides(tiny_dash, 2 * EPOCH_STEPS, EPOCH_STEPS), "ckpt_path=last"])
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == good
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # no half-written leftovers
    monkeypatch.undo()
    train(run_dir, [*resume_overrides(tiny_dash, 2 * EPOCH_STEPS, EPOCH_STEPS), "ckpt_path=last"])
    assert json.loads((run_dir / "dot" / "dot.json").read_text())["steps"] == 2 * EPOCH_STEPS


def test_resume_without_checkpoint_fails_clearly(tiny_dash: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ckpt_path=last: no checkpoint at .*hydra.run.dir"):
        train(tmp_path, [*tiny(tiny_dash, 2, 2), "ckpt_path=last"])


def test_init_from_continues_from_a_saved_dot_and_counts_its_steps(
    tiny_dash: Path, other_dash: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """init_from loads a saved Dot's weights (at lr 1e-12 they stay within 1e-6: the new Dot is the old one) and
    its record adds the earlier steps; a Dot of another Dash is refused before training."""
    given = uninterrupted / "dot"
    train(tmp_path / "more", [*tiny(tiny_dash, 2, 2), f"init_from={given}", "module.lr=1e-12"])
    record = json.loads((tmp_path / "more" / "dot" / "dot.json").read_text())
    earlier = json.loads((given / "dot.json").read_text())
    assert record["steps"] == earlier["steps"] + 2 and record["init_from"] == str(given)
    before, after = load_file(given / "dot.safetensors"), load_file(tmp_path / "more" / "dot" / "dot.safetensors")
    assert all(torch.allclose(before[name], after[name], rtol=0, atol=1e-6) for name in before)
    assert any((before[name] - after[name]).abs().max() > 0 for name in before)  # it did train
    # a Dot of another base (dot.base) is a starting point too; the new Dot records its own
    train(tmp_path / "x0", [*tiny(tiny_dash, 2, 2), f"init_from={given}", "dot.base=x0"])
    assert (earlier["dot_base"], json.loads((tmp_path / "x0" / "dot" / "dot.json").read_text())["dot_base"]) == ("eps", "x0")
    with pytest.raises(ValueError, match=r"^Dot .* was trained for another Dash"):
        train(tmp_path / "other", [*tiny(other_dash, 2, 2), f"init_from={given}"])
    assert not (tmp_path / "other" / "checkpoints").exists()


def test_resuming_with_another_init_from_is_refused(uninterrupted: Path, tiny_dash: Path, tmp_path: Path) -> None:
    """Resuming the run that made a Dot while continuing from that Dot (init_from) would count its steps twice:
    refused in one line before training, nothing written."""
    last = uninterrupted / "checkpoints" / "last.ckpt"
    given = uninterrupted / "dot"
    with pytest.raises(ValueError, match=rf"^init_from={given} does not match ckpt_path=.*started from init_from=None"):
        train(tmp_path / "mixed", [*tiny(tiny_dash, 4, 2), f"init_from={given}", f"ckpt_path={last}"])
    assert not (tmp_path / "mixed" / "dot").exists()


# ---------------------------------------------------------------------------- validation
def test_validation_logs_dot_and_reuse_mse(uninterrupted: Path) -> None:
    with open(uninterrupted / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for key in ("val/dot_mse", "val/reuse_mse", "train/dot_mse"):
        values = [float(row[key]) for row in rows if row.get(key)]
        assert values, f"{key} never logged"
        assert all(not math.isnan(v) and v >= 0 for v in values), f"{key}: {values}"
    record = json.loads((uninterrupted / "dot" / "dot.json").read_text())
    assert {"val/dot_mse", "val/reuse_mse"} <= set(record["metrics"])
    # what evaluate checks a Dot against: the gaps and step counts it was trained on, and
    # the scheduler's options (trailing spacing by default)
    assert record["coverage"] == {"max_gap": 4, "fine_steps": [4, 64]}  # the default stride 4
    assert record["scheduler_options"] == {"timestep_spacing": "trailing", "use_clipped_model_output": False}


# ---------------------------------------------------------------------------------- DDP
@pytest.mark.parametrize("stretches", [[], ["stretches=cached", "stretches.passes=1", "stretches.stepping=own"]],
                         ids=["live", "cached"])
def test_ddp_on_cpu_writes_one_checkpoint_and_one_dot(tiny_dash: Path, tmp_path: Path, stretches: list[str]) -> None:
    """Two CPU processes (gloo); with cached stretches, rank 0 builds the one cache both read."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "morse_exp.train", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
         *tiny(tiny_dash, 4, 2), *stretches, f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}"],
        check=False, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(run_dir.rglob("last.ckpt")) == [run_dir / "checkpoints" / "last.ckpt"]
    assert all(p.parent == run_dir / "checkpoints" for p in run_dir.rglob("*.ckpt"))
    assert sorted(run_dir.rglob("dot.safetensors")) == [run_dir / "dot" / "dot.safetensors"]
    record = json.loads((run_dir / "dot" / "dot.json").read_text())
    assert record["steps"] == 4
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"] == 4
    assert len(list((tmp_path / "cache").glob("stretches/*.safetensors"))) == (1 if stretches else 0)


# ------------------------------------------------------------------------------- logging
def test_wandb_logs_offline_under_run_dir(cli: dict[str, dict[str, Any]]) -> None:
    result = cli["wandb"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    run_dir = result["dir"] / "run"
    logs = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(logs) == 1, sorted(files_in(run_dir))
    keys = {
        item.key or "/".join(item.nested_key)
        for record in wandb_records(Path(logs[0]))
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
    }
    assert {"train/dot_mse", "val/dot_mse", "val/reuse_mse"} <= keys, sorted(keys)
    wandb_dir = result["dir"].parent / "wandb_dir"
    assert not wandb_dir.exists() or not list(wandb_dir.rglob("offline-run-*"))


def test_wandb_logger_mode_follows_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def mode(**kwargs: Any) -> str:
        return tracking.wandb_logger("p", tmp_path / "run", "n", **kwargs)._wandb_init["mode"]

    assert mode() == "offline"
    assert (tmp_path / "run").is_dir()
    with pytest.raises(ValueError, match="no W&B API key"):
        mode(offline=False)  # would otherwise prompt for a key
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(ValueError, match="no W&B API key"):
        mode()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert mode() == "disabled"
    assert mode(offline=True) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert mode() == "online"
    assert mode(offline=True) == "offline"
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert mode() == "online"
    with pytest.raises(ValueError, match="log_model"):
        mode(offline=True, log_model=True)
    assert os.environ.get("WANDB_MODE") is None  # the environment is left alone


# --------------------------------------------------------------------------- bad inputs
def test_checkpoint_of_another_dash_is_refused(cli: dict[str, dict[str, Any]]) -> None:
    result = cli["other_dash"]
    assert result["rc"] != 0
    line = one_line_error(result)
    assert line.startswith("error:") and "another Dash" in line, result["stderr"][-3000:]
    assert not (result["dir"] / "run" / "dot").exists()


@pytest.mark.parametrize(
    "case, words",
    [
        ("stride_zero", ["jump_stride"]),
        ("stride_text", ["jump_stride", "abc"]),
        ("stride_one", ["jump_stride", "Dot steps"]),
        ("stride_one_override", ["jump_stride", "Dot steps"]),
        ("dash_missing", ["model.pretrained", "/nonexistent"]),
        ("dash_offline_hub", ["model.pretrained", "morse_exp.pretrain"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    cli: dict[str, dict[str, Any]], case: str, words: list[str]
) -> None:
    result = cli[case]
    stderr = result["stderr"]
    assert result["rc"] == 2, f"exit code {result['rc']}, stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR" not in stderr, stderr[-3000:]
    line = one_line_error(result)
    assert line.startswith("error: ") and "\n" not in line
    for word in words:
        assert word in line, line
    run_dir = result["dir"] / "run"
    written = files_in(run_dir) if run_dir.exists() else set()
    assert {f for f in written if not f.startswith(".hydra/") and f != "train.log"} == set(), written


# ------------------------------------------------------------------------------ multirun
def test_multirun_basic_launcher_runs_each_stride(cli: dict[str, dict[str, Any]]) -> None:
    result = cli["multirun"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    sweep = result["dir"] / "sweep"
    strides = {}
    for job in ("0", "1"):
        assert (sweep / job / "dot" / "dot.safetensors").is_file(), sorted(files_in(sweep))
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        record = json.loads((sweep / job / "dot" / "dot.json").read_text())
        strides[job] = record["jump_stride"]["stride"]
    assert strides == {"0": 2, "1": 3}


def test_dot_share_pattern_trains_the_widest_gap_of_its_evaluation_schedules(tiny_dash: Path, tmp_path: Path) -> None:
    """k = B/2 at N = 4: 3 LSD -> Dash at 0, 3 of 6 steps; 6 LSD -> Dash at 0, 5, 10 of 15: K = 5."""
    cfg = compose_train(tmp_path, [*tiny(tiny_dash, 2, 2), "jump_stride=dot_share", "speed_ratio=4.0",
                                   "lsd_budgets=[3,6]"])
    assert build(cfg)["module"].max_gap == 5
    explicit = compose_train(tmp_path, [*tiny(tiny_dash, 2, 2), "jump_stride=dot_share", "module.max_gap=7"])
    assert build(explicit)["module"].max_gap == 7


def test_dot_share_gaps_use_the_n_stored_for_the_evaluation_device_and_precision(
    tiny_dash: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without speed_ratio, train reads (or measures once) the N stored for eval_device,
    eval_precision and eval_batch_size: the same file evaluate reads there, so a Dot trained
    for a GPU evaluation is not sized by this machine's CPU N."""
    from morse_exp import speed

    measured = iter([4.0, 9.0])  # a second measurement would differ
    monkeypatch.setattr(speed, "measure_speed_ratio", lambda *a, **k: speed.SpeedMeasurement(8, next(measured), 1.0))
    common = [*tiny(tiny_dash, 2, 2), "jump_stride=dot_share", "lsd_budgets=[3,6]", "eval_batch_size=8",
              f"paths.cache_dir={tmp_path}/cache"]
    assert build(compose_train(tmp_path / "a", common))["module"].max_gap == 5  # N = 4, as above
    assert build(compose_train(tmp_path / "b", common))["module"].max_gap == 5  # read back, not 9
    (stored,) = (tmp_path / "cache" / "speed").glob("speed_ratio-*.json")
    key = json.loads(stored.read_text())["key"]
    assert (key["device"], key["precision"], key["rows"]) == ("cpu", "32", 8)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^eval_device=cuda is invalid here: this machine has no CUDA GPU"):
            build(compose_train(tmp_path / "c", [*common, "eval_device=cuda"]))


def test_a_dot_trained_for_several_samplers_is_accepted_by_each(tiny_dash: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "mixed"
    train(run_dir, [*tiny(tiny_dash, 2, 2), "logger=none", "extra_schedulers=[ddpm,dpm_solver]"])
    record = json.loads((run_dir / "dot" / "dot.json").read_text())
    assert set(record["extra_schedulers"]) == {"ddpm", "dpm_solver"}
    assert record["extra_schedulers"]["dpm_solver"]["timestep_spacing"] == "trailing"
    for name in ("ddim", "ddpm", "dpm_solver"):
        cfg = compose_config("evaluate", [f"model.pretrained={tiny_dash}", f"scheduler={name}",
                                          f"dot_checkpoint={run_dir / 'dot'}"], tmp_path / f"eval_{name}")
        assert check_dot_record(cfg)["scheduler"] == "ddim"
    cfg = compose_config("evaluate", [f"model.pretrained={tiny_dash}", "scheduler=sde",
                                      f"dot_checkpoint={run_dir / 'dot'}"], tmp_path / "eval_sde")
    with pytest.raises(ValueError, match=r"trained for scheduler 'ddim' / 'ddpm' / 'dpm_solver', this run samples "
                                         r"with 'sde'"):
        check_dot_record(cfg)


@pytest.mark.parametrize(("names", "words"), [("[ddim]", "'ddim' is listed twice"), ("[fast]", "'fast' is not a scheduler")])
def test_bad_extra_schedulers_are_refused_in_one_line(tiny_dash: Path, tmp_path: Path, names: str, words: str) -> None:
    with pytest.raises(ValueError, match=rf"^extra_schedulers=.* is invalid: {words}; choose other names than "
                                         r"scheduler=ddim from .*ddpm"):
        build(compose_train(tmp_path, [*tiny(tiny_dash, 2, 2), f"extra_schedulers={names}"]))
