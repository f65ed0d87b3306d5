"""Loggers: a CSV logger that survives resuming (:class:`ResumableCSVLogger`), and Weights &
Biases logging that works on machines without a W&B account (CI, clusters).

``logger=wandb`` builds :func:`wandb_logger`. With ``logger.offline=null`` (the default) the
run is *offline* unless the user has configured W&B, i.e. one of

* ``WANDB_API_KEY`` (or ``WANDB_IDENTITY_TOKEN_FILE``) is set,
* ``~/.netrc`` (or the file ``NETRC`` names) holds an API key for the W&B host
  (``api.wandb.ai``, or the host of ``WANDB_BASE_URL``), which is what ``wandb login`` writes,
* ``WANDB_MODE=online``.

An offline run is kept under ``save_dir`` (the Hydra run directory) as
``<save_dir>/wandb/offline-run-<time>-<id>/`` and can be uploaded later with
``wandb sync <save_dir>/wandb/offline-run-*``. Nothing here ever prompts for a login: an online
run without credentials fails at once with a one-line ``ValueError``.
"""

from __future__ import annotations

import csv
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

DEFAULT_HOST = "https://api.wandb.ai"


def wandb_logger(
    project: str,
    save_dir: str | os.PathLike[str],
    name: str | None,
    offline: bool | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """A Lightning ``WandbLogger`` that is offline unless W&B is configured, and never prompts.

    Args:
        project: W&B project name.
        save_dir: directory the run's files go to (``<save_dir>/wandb/...``); the Hydra run
            directory in the configs, so an offline run stays with its checkpoints.
        name: display name of the run.
        offline: ``True``: always offline (sync later with ``wandb sync``); ``False``: online,
            which needs W&B credentials; ``None``: online only if W&B is configured
            (``WANDB_API_KEY``, an API key in ``~/.netrc`` for the W&B host, or
            ``WANDB_MODE=online``), otherwise offline. ``WANDB_MODE=disabled`` is respected
            when ``offline`` is ``None``.
        **kwargs: passed to ``WandbLogger`` (and from there to ``wandb.init``).

    Raises:
        ValueError: (one line) if an online run is asked for but no W&B credentials are
            found, or if ``log_model`` is combined with an offline run.
    """
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    credentials = has_credentials()
    if offline is None:
        offline = not (credentials or env_mode == "online")
        if env_mode == "disabled":
            kwargs.setdefault("mode", "disabled")
    if offline:
        kwargs.setdefault("mode", "offline")
        if kwargs.get("log_model"):
            raise ValueError(
                "logger.log_model needs an online W&B run, but this run is offline: "
                "set logger.offline=false (with W&B credentials) or drop log_model"
            )
    else:
        if not credentials:
            raise ValueError(
                "W&B online logging was requested (logger.offline=false or WANDB_MODE=online) "
                "but no W&B API key is configured: set WANDB_API_KEY, run `wandb login`, "
                "or log offline with logger.offline=true"
            )
        kwargs.setdefault("mode", "online")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    # ``mode`` goes to wandb.init directly: WandbLogger(offline=True) would instead rewrite
    # os.environ["WANDB_MODE"] for the rest of the process.
    return WandbLogger(name=name, save_dir=str(save_dir), project=project, offline=False, **kwargs)


def has_credentials() -> bool:
    """Whether W&B credentials are configured (environment or ``.netrc``), without prompting."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    if not host:
        return False
    path = os.environ.get("NETRC") or str(Path.home() / (".netrc" if os.name != "nt" else "_netrc"))
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued, not deleted.

    Lightning deletes the file when a logger opens a non-empty directory, so resuming a run
    in its own directory (``ckpt_path=last``) used to lose every earlier row.
    """

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class ResumableCSVLogger(CSVLogger):
    """``logger=csv``: Lightning's CSVLogger whose resumed runs append to ``metrics.csv``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
