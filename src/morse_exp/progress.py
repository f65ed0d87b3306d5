"""Progress of long work (training, pretraining, an evaluate sweep) with elapsed time and ETA.

On a terminal a tqdm bar; otherwise (output sent to a file or CI) one plain line whenever
another ``every_percent`` of the work is done or ``every_seconds`` have passed, so a log
shows where a run stands. :class:`StepProgress` is the Lightning callback for
``trainer.max_steps`` (it replaces Lightning's own bar, which cannot count steps across
epochs: with ``max_epochs=-1`` it shows "Epoch 90/-2").
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L
from tqdm.auto import tqdm


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``done`` of ``total`` units of work, reported with elapsed time and ETA.

    Args:
        label: what is being done ("train", "evaluate sweep"...).
        total: units of work in all (steps, sample-steps...).
        done: units already done before this process started (a resumed run).
        stream: where to write; a terminal gets a bar, anything else log lines.
        every_percent / every_seconds: a log line at least this often.
    """

    def __init__(self, label: str, total: float, done: float = 0.0, stream: TextIO | None = None,
                 every_percent: float = 5.0, every_seconds: float = 60.0) -> None:
        self.label, self.total, self.start_done = label, max(float(total), 1e-12), float(done)
        self.stream = stream or sys.stderr
        self.every_percent, self.every_seconds = every_percent, every_seconds
        self.done = float(done)
        self.started = time.perf_counter()
        self._logged_at, self._logged_percent = self.started, 100.0 * self.done / self.total
        self._bar = None
        if self.stream.isatty():
            self._bar = tqdm(total=round(total), initial=round(done), desc=label, file=self.stream,
                             dynamic_ncols=True)

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate of this process so far (None before any progress)."""
        rate = (self.done - self.start_done) / max(time.perf_counter() - self.started, 1e-9)
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self, detail: str = "") -> str:
        eta = self.eta_seconds()
        elapsed = _clock(time.perf_counter() - self.started)
        remaining = _clock(eta) if eta is not None else "?"
        done = f"{self.done:.0f}/{self.total:.0f} ({100 * self.done / self.total:.0f}%)"  # 614689/1164690, not 1.16e+06
        return f"{self.label}: {done}, {elapsed} elapsed, ETA {remaining}" + (f"; {detail}" if detail else "")

    def update(self, amount: float = 1.0, detail: str = "") -> None:
        """Count ``amount`` more units done; ``detail`` (e.g. the loss) joins the report."""
        self.done = min(self.total, self.done + amount)
        if self._bar is not None:
            self._bar.update(round(self.done) - self._bar.n)
            if detail:
                self._bar.set_postfix_str(detail, refresh=False)
            return
        now, percent = time.perf_counter(), 100.0 * self.done / self.total
        due = percent - self._logged_percent >= self.every_percent or now - self._logged_at >= self.every_seconds
        if due or self.done >= self.total:
            print(self.line(detail), file=self.stream, flush=True)
            self._logged_at, self._logged_percent = now, percent

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class StepProgress(L.Callback):
    """Training progress in optimiser steps out of ``trainer.max_steps``, with ETA and loss,
    and the run's wall-clock seconds across resumes (:meth:`run_seconds`): its clock starts
    when the callback is built (with the trainer, just before ``fit``) and a checkpoint carries
    the seconds so far, which a run resumed from it starts from."""

    def __init__(self, label: str = "train") -> None:
        self.label = label
        self.progress: Progress | None = None
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # the runs this one resumed, from its checkpoint

    def run_seconds(self) -> float:
        """Wall-clock seconds of this run so far, the runs it resumed included."""
        return self.seconds_before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"run_seconds": self.run_seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = float(state_dict.get("run_seconds", 0.0))  # 0: a checkpoint older than the clock

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.max_steps > 0:
            self.progress = Progress(self.label, trainer.max_steps, done=trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if self.progress is not None:
            metrics = trainer.progress_bar_metrics.items()
            shown = {k: float(v) for k, v in metrics if k.startswith(("train/", "val/"))}
            detail = ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
            self.progress.update(trainer.global_step - self.progress.done, detail)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.progress is not None:
            self.progress.close()
