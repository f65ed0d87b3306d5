"""Trained Dot weights on disk: safetensors + a JSON record that ties them to their Dash.

``<dir>/dot.safetensors`` holds only Dot's trainable tensors (new blocks + LoRA);
``<dir>/dot.json`` records the Dash fingerprint, the Dot settings, the scheduler and jump
pattern it was trained for, and the resolved run config. Loading refuses a Dot made for
another Dash or another Dot construction before any sampling starts.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from morse_exp.atomic import write_atomic
from morse_exp.dash import Dash
from morse_exp.dot import Dot

WEIGHTS_NAME = "dot.safetensors"
RECORD_NAME = "dot.json"


def dash_fingerprint(dash: Dash) -> str:
    """sha256 over Dash's own denoiser weights (LoRA adapters excluded)."""
    return weights_fingerprint(
        (name.replace(".base_layer", ""), tensor)
        for name, tensor in sorted(dash.unet.state_dict().items())
        if ".lora_" not in name
    )


def weights_fingerprint(weights: Iterable[tuple[str, Tensor]]) -> str:
    """sha256 over (name, tensor) pairs in the order given, tensors as float32."""
    digest = hashlib.sha256()
    for name, tensor in weights:
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def dot_fingerprint(dot: Dot) -> str:
    """sha256 of a Dot's trainable weights (the ones ``save_dot`` writes), sorted by name."""
    return weights_fingerprint(sorted(dot.trainable_state_dict().items()))


def check_compatible(
    record: dict[str, Any], fingerprint: str, dot_config: dict[str, Any], what: str, base: str | None = None
) -> None:
    """Refuse a Dot made for another Dash, another Dot construction or (``base`` given) another
    base estimate (one-line ValueError); a record without ``dot_base`` predates bases: "eps"."""
    if record.get("dash_fingerprint") != fingerprint:
        raise ValueError(
            f"{what} was trained for another Dash ({record.get('dash_source', '?')}, "
            f"fingerprint {str(record.get('dash_fingerprint'))[:12]}), not this one "
            f"(fingerprint {fingerprint[:12]}): use a Dot trained on this model"
        )
    saved = record.get("dot_config")
    if saved is not None and saved != dot_config:
        raise ValueError(f"{what} has Dot settings {saved}, but this run builds {dot_config}")
    saved_base = record.get("dot_base", "eps")
    if base is not None and saved_base != base:
        raise ValueError(f"{what} was trained with dot.base={saved_base}, but this run builds dot.base={base}: "
                         f"set dot.base={saved_base}")


def save_dot(dot: Dot, directory: str | Path, record: dict[str, Any]) -> Path:
    """Write ``dot.safetensors`` and ``dot.json`` into ``directory`` (each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        **record,
        "dash_fingerprint": dash_fingerprint(dot.dash),
        "dash_source": dot.dash.source,
        "dot_config": dot.config,
        "dot_base": dot.base,
    }
    weights = {name: t.contiguous().cpu() for name, t in dot.trainable_state_dict().items()}
    write_atomic(directory / WEIGHTS_NAME, save(weights))
    write_atomic(directory / RECORD_NAME, json.dumps(record, indent=2, default=str).encode())
    return directory


def read_record(directory: str | Path) -> dict[str, Any]:
    """The ``dot.json`` record of a saved Dot (one-line FileNotFoundError if absent)."""
    path = Path(directory) / RECORD_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained Dot at {Path(directory)}: expected {RECORD_NAME} and {WEIGHTS_NAME} "
            "(written by `python -m morse_exp.train` into its run directory under dot/)"
        )
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): train the Dot again or restore the file") from error
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not a Dot record: train the Dot again")
    return record


def load_dot_weights(dot: Dot, directory: str | Path, same_base: bool = True) -> dict[str, Any]:
    """Load saved weights into ``dot`` after checking they were made for its Dash and settings
    (and, with ``same_base``, for its base estimate: a training run may start from a Dot of
    another base, evaluation may not).

    Returns:
        the saved record (scheduler, jump pattern, run config...).
    """
    record = read_record(directory)
    check_compatible(record, dash_fingerprint(dot.dash), dot.config, f"Dot {directory}", dot.base if same_base else None)
    try:
        weights = load_file(Path(directory) / WEIGHTS_NAME)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{Path(directory) / WEIGHTS_NAME} is not a readable safetensors file: {error}") from error
    broken = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(
            f"{Path(directory) / WEIGHTS_NAME} holds non-finite values ({len(broken)} tensors, e.g. {broken[0]}): "
            "its training diverged; train it again with a lower module.lr"
        )
    params = dict(dot.trainable_parameters())
    if set(weights) != set(params):
        raise ValueError(
            f"{Path(directory) / WEIGHTS_NAME} holds {len(weights)} tensors, this Dot has "
            f"{len(params)} trainable ones: it was saved from a different Dot"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    return record


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written with :func:`morse_exp.atomic.write_atomic`: a save that
    fails part-way (disk full, a kill) leaves the previous checkpoint whole, so a run can
    still resume from it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(path), buffer.getvalue())
