"""On the embedded default, training Dot brings its residual error clearly below plain reuse."""

from __future__ import annotations

import pytest

from morse_exp.train import run


@pytest.mark.slow
def test_training_on_the_shipped_dash_beats_reuse_on_held_out_data(run_config, tmp_path):
    """~3 CPU minutes: 500 steps of the default recipe on the shipped digits Dash."""
    cfg = run_config(
        "train",
        ["trainer.max_steps=500", "trainer.val_check_interval=500", "logger=none"],
        tmp_path / "run",
    )
    metrics, _ = run(cfg)
    assert metrics["val/dot_mse"] < 0.6 * metrics["val/reuse_mse"]
