"""What every Hydra entry point shares: one-line errors, seeding, loggers."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from morse_exp.data import DatasetNotFoundError
from morse_exp.loading import DashLoadError
from morse_exp.progress import StepProgress

CONFIG_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "conf")


def compose_config(config_name: str, overrides: list[str], run_dir: str | Path) -> DictConfig:
    """A conf/ config as ``@hydra.main`` would build it, with its run directory at ``run_dir``
    (for tests and scripts that run an entry point's code without a Hydra run)."""
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_PATH), version_base="1.3", job_name=config_name):
        cfg = compose(config_name, overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        if OmegaConf.is_missing(cfg.hydra.runtime, "cwd"):
            cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves against this from now on
    with open_dict(cfg):
        del cfg["hydra"]  # the task config of a real run has no hydra node
    return cfg

# Expected failures caused by the user's input or machine: one line on stderr, exit code 2.
USER_ERRORS = (DashLoadError, DatasetNotFoundError, ValueError, FileNotFoundError, MissingMandatoryValue)


def quiet_known_noise() -> None:
    """Silence, at their source, messages a user of this project cannot act on."""
    # Lightning calls a torch API that torch has deprecated; nothing to change on our side.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Dash is frozen and kept in eval mode on purpose; Lightning warns of any eval-mode module.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Short epochs (11 batches on digits): metrics are logged by global step all the same.
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")
    # An advertisement for a cloud service, printed by every Trainer.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")
    )


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Turn ``run(cfg)`` into a Hydra main that reports user errors as one line.

    Set ``MORSE_DEBUG=1`` to get the full traceback instead.
    """

    def decorate(run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
        @functools.wraps(run)
        def main(cfg: DictConfig) -> Any:
            quiet_known_noise()
            try:
                run(cfg)
            except (*USER_ERRORS, InstantiationException) as error:
                cause = error.__cause__ if isinstance(error, InstantiationException) else error
                if os.environ.get("MORSE_DEBUG") or not isinstance(cause, USER_ERRORS):
                    raise
                message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
                if isinstance(cause, MissingMandatoryValue):
                    key = getattr(cause, "full_key", None) or message.rsplit(" ", 1)[-1]
                    message = f"{key} is not set: give it on the command line, e.g. {key}=<value>"
                print(f"error: {message}", file=sys.stderr)
                drop_unused_run_dir()
                if HydraConfig.get().mode == RunMode.MULTIRUN:
                    raise RuntimeError(message) from None  # this job fails, the sweep goes on
                sys.exit(2)

        return main

    return decorate


class RunDirCheck(Callback):
    """Creates the run (or sweep) directory before Hydra does and writes a probe file in it, so
    that a directory that cannot be written (under a file, read-only, immutable, disk full) is
    one ``error:`` line with exit code 2 before any work, not an exception inside Hydra.

    ``created`` is the run directory this process made (None if it existed before), so that a
    run refused for bad input can take it away again (:func:`drop_unused_run_dir`).
    """

    created: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        HydraConfig.instance().set_config(config)  # a ${hydra:...} in the directory resolves
        directory = Path(str(OmegaConf.select(config, key)))
        if key == "hydra.run.dir" and not directory.exists():
            RunDirCheck.created = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as error:
            print(f"error: {key}={directory} cannot be written ({error.strerror}): choose another directory",
                  file=sys.stderr)
            sys.exit(2)


def drop_unused_run_dir() -> None:
    """Remove the run directory this process created if it holds nothing but Hydra's own
    ``.hydra/`` record: a run refused before any work leaves no empty folder behind."""
    directory = RunDirCheck.created
    if directory is not None and directory.is_dir() and {p.name for p in directory.iterdir()} <= {".hydra"}:
        shutil.rmtree(directory)


def instantiate_logger(cfg: DictConfig) -> Any:
    """The configured Lightning logger, or False when ``logger=none``."""
    if not cfg.get("logger"):
        return False
    return hydra.utils.instantiate(cfg.logger)


def instantiate_trainer(cfg: DictConfig, task: str) -> Any:
    """The configured Lightning Trainer with the run's logger, checkpoint callback and a
    ``task`` progress line; warns in one line when it would autocast to bf16 on a CPU that
    only emulates bf16 (no avx512_bf16 / AMX), where a step is ~20x slower than in fp32."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("bf16") and cfg.trainer.get("accelerator") == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"trainer.precision={precision} on this CPU emulates bf16 (no avx512_bf16 or AMX): a step takes ~20x "
            "longer than with trainer.precision=32-true", stacklevel=2,
        )
    callbacks = [hydra.utils.instantiate(cfg.checkpoint), StepProgress(task)]
    return hydra.utils.instantiate(cfg.trainer, logger=instantiate_logger(cfg), callbacks=callbacks)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN computes bf16 natively on this CPU (avx512_bf16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: str) -> str | None:
    """``last`` -> the run's last.ckpt (which must exist); other values pass through checked."""
    if ckpt_path is None:
        return None
    path = Path(checkpoint_dir) / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = " (resume in the same run directory: hydra.run.dir=<old run dir> ckpt_path=last)"
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint at {path}{hint}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut or foreign file is not one
        raise ValueError(
            f"ckpt_path={ckpt_path}: {path} is not a valid checkpoint (not a complete torch checkpoint "
            "archive: truncated or another kind of file); point ckpt_path at an intact one"
        )
    return str(path)
