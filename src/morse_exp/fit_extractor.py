"""Train a feature extractor for FID / KID: ``python -m morse_exp.fit_extractor dataset=digits name=digits_classifier``.

``kind=classifier`` trains a small CNN on the dataset's labelled train split (features: its
penultimate layer) and reports held-out accuracy; ``kind=autoencoder`` trains a plain
autoencoder (features: its bottleneck) for unlabelled image folders and reports held-out
reconstruction error; ``kind=auto`` picks the classifier when the dataset has labels.
The extractor is written atomically (``<name>.partial/`` then renamed) to
``<save_dir>/<name>/`` (default ``outputs/extractors/<name>/``), where
:class:`morse_exp.metrics.QualityMetrics` finds it by name. See :mod:`morse_exp.extractors`.

Long fits are resumable: every ``save_every`` steps the training state (weights, optimiser,
learning-rate schedule, random streams, step) is written atomically to
``<run dir>/fit_state.pt``; rerunning with the same ``hydra.run.dir`` and settings continues
from it and ends with the same extractor as an uninterrupted run.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, TensorDataset

from morse_exp.atomic import write_atomic
from morse_exp.cli import entry_point
from morse_exp.extractors import ExtractorNet, save_extractor
from morse_exp.progress import Progress


def dataset_labels(dataset: Dataset) -> np.ndarray | None:
    """Integer class labels of a split (None when unlabelled: label -1 or not an int)."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) > 1:
        labels = tensors[1]
    elif getattr(dataset, "targets", None) is not None:
        labels = torch.as_tensor(dataset.targets)
    else:
        labels = torch.as_tensor([_as_label(dataset[i][1]) for i in range(len(dataset))])
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) == 0 or int(labels.min()) < 0:
        return None
    return labels.numpy().astype(np.int64)


def _as_label(label: Any) -> int:
    if torch.is_tensor(label):
        return int(label) if label.dim() == 0 and not label.is_floating_point() else -1
    return label if isinstance(label, int) else -1


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` px (edge pixels replicated)."""
    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def _batches(dataset: Dataset, batch_size: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True,
                        drop_last=True, generator=generator)
    while True:
        yield from loader


@torch.no_grad()
def evaluate(model: ExtractorNet, dataset: Dataset, batch_size: int = 512) -> dict[str, float]:
    """Held-out accuracy (classifier) or mean squared reconstruction error (autoencoder)."""
    model.eval()
    correct, total, squared = 0, 0, 0.0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        images = _quantize(images)
        if model.kind == "classifier":
            correct += int((model(images).argmax(1) == labels).sum())
        else:
            squared += float(F.mse_loss(model(images), images, reduction="sum"))
        total += len(images)
    if model.kind == "classifier":
        return {"heldout_accuracy": correct / total, "num_heldout": total}
    return {"heldout_mse": squared / (total * images[0].numel()), "num_heldout": total}


def _in_memory(dataset: Dataset, limit: int = 20_000) -> Dataset:
    """Small splits decoded once into a TensorDataset (image folders are slow to re-read)."""
    if getattr(dataset, "tensors", None) is not None or len(dataset) > limit:
        return dataset
    items = [dataset[i] for i in range(len(dataset))]
    return TensorDataset(torch.stack([image for image, _ in items]),
                         torch.tensor([_as_label(label) for _, label in items], dtype=torch.long))


def _stack(dataset: Dataset, limit: int = 10_000) -> torch.Tensor:
    """The first ``limit`` images of a split, stacked."""
    count = min(limit, len(dataset))
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tensors[0][:count]
    return torch.stack([dataset[i][0] for i in range(count)])


def _quantize(images: torch.Tensor) -> torch.Tensor:
    """What the metric will feed: images rounded to 8 bits, back in [-1, 1]."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def fit(
    datamodule: Any,
    kind: str = "auto",
    steps: int = 3000,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    code_dim: int = 64,
    width: int = 32,
    augment_shift: int = 1,
    state_path: Path | None = None,
    save_every: int = 100,
    device: str = "cpu",
) -> tuple[ExtractorNet, dict[str, Any]]:
    """Train an extractor on ``datamodule``'s train split; returns (model, record for the json).

    Training runs on ``device`` (the batches, drawn and augmented on the CPU, are moved there);
    the returned model is on the CPU. With ``state_path``, the training state is saved there every ``save_every`` steps and a
    state already there (from the same settings) is resumed; see the module docstring.
    """
    torch.manual_seed(seed)
    train, heldout = _in_memory(datamodule.split("train")), _in_memory(datamodule.split("heldout"))
    labels = dataset_labels(train) if getattr(datamodule, "has_labels", True) else None
    if kind == "auto":
        kind = "classifier" if labels is not None else "autoencoder"
    if kind == "classifier" and labels is None:
        raise ValueError(f"kind=classifier needs labels but dataset {datamodule.name!r} has none: use kind=autoencoder")
    if kind not in ("classifier", "autoencoder"):
        raise ValueError(f"kind={kind!r} is invalid: use classifier, autoencoder or auto")
    channels, resolution, _ = datamodule.image_shape
    num_classes = int(labels.max()) + 1 if kind == "classifier" else None
    model = ExtractorNet(kind, channels, resolution, code_dim, width, num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, min(100, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    generator = torch.Generator().manual_seed(seed + 1)
    batches = _batches(train, batch_size, seed)
    settings = {"kind": kind, "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
                "weight_decay": weight_decay, "code_dim": code_dim, "width": width, "augment_shift": augment_shift,
                "dataset": datamodule.name, "num_train": len(train)}
    done = _resume(state_path, settings, model, optimizer, schedule, generator) if state_path else 0
    for _ in range(done):  # the data order of an uninterrupted run
        next(batches)
    start, loss_value = time.time(), float("nan")
    progress = Progress("fit_extractor" + (f" (resumed at step {done})" if done else ""), steps - done)
    model.train()
    for step in range(done, steps):
        images, targets = next(batches)
        images = _quantize(images)
        if kind == "classifier":
            images = random_shift(images, augment_shift, generator).to(device)
            loss = F.cross_entropy(model(images), targets.to(device))
        else:
            images = images.to(device)
            loss = F.mse_loss(model(images), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        progress.update(1, f"loss {loss_value:.4f}")
        if state_path is not None and ((step + 1) % save_every == 0 or step + 1 == steps):
            _save_state(state_path, settings, step + 1, model, optimizer, schedule, generator)
    progress.close()
    model.cpu()
    model.calibrate(_quantize(_stack(train)))
    scores = evaluate(model, heldout)
    record = {
        "num_classes": num_classes,
        "width": width,
        "features": ("penultimate layer (linear output before ReLU and class head)"
                     if kind == "classifier" else "bottleneck of a plain autoencoder + spatial std of "
                     "the first two encoder activation maps")
        + "; each block centred and scaled to unit mean variance on the train split",
        "training_dataset": datamodule.name,
        "heldout_accuracy": scores.get("heldout_accuracy"),
        "heldout_mse": scores.get("heldout_mse"),
        "num_heldout": scores["num_heldout"],
        "num_train": len(train),
        "training": {
            "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "augment_shift": augment_shift if kind == "classifier" else 0,
            "final_train_loss": loss_value, "seconds": round(time.time() - start, 1),
            "torch": torch.__version__, "torch_num_threads": torch.get_num_threads(),
        },
    }
    return model, record


def _save_state(path: Path, settings: dict[str, Any], step: int, model: ExtractorNet, optimizer: Any,
                schedule: Any, generator: torch.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"settings": settings, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state()}, buffer)  # the global stream drives dropout
    write_atomic(path, buffer.getvalue())


def _resume(path: Path, settings: dict[str, Any], model: ExtractorNet, optimizer: Any, schedule: Any,
            generator: torch.Generator) -> int:
    """Load a saved training state into the objects; returns its step (0 when there is none).
    One-line ValueError when it was saved with other settings or cannot be read."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (any unreadable file: one line, not a traceback)
        raise ValueError(f"{path} is not a readable fit state ({type(error).__name__}): delete it to start "
                         "over, or use another hydra.run.dir") from None
    if state.get("settings") != settings:
        changed = sorted(k for k in settings if state.get("settings", {}).get(k) != settings[k])
        raise ValueError(f"{path} was saved with other settings ({', '.join(changed)} differ): rerun with its "
                         "settings to resume, or use another hydra.run.dir to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    print(f"resuming fit_extractor from {path} at step {state['step']}")
    return int(state["step"])


def _command() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except (ValueError, ImportError):  # run(cfg) called from Python, not the command line
        return "morse_exp.fit_extractor.run(cfg) called from Python (see dataset_config and training)"
    return "python -m morse_exp.fit_extractor " + " ".join(overrides)


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, save atomically to ``<save_dir>/<name>/``, print the held-out score."""
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device} is invalid here: this machine has no CUDA GPU; use device=cpu")
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.check_available()
    model, record = fit(
        datamodule, kind=cfg.kind, steps=cfg.steps, seed=cfg.seed, batch_size=cfg.batch_size,
        lr=cfg.lr, weight_decay=cfg.weight_decay, code_dim=cfg.code_dim, width=cfg.width,
        augment_shift=cfg.augment_shift, state_path=Path(cfg.paths.output_dir) / "fit_state.pt",
        save_every=cfg.save_every, device=cfg.device,
    )
    name = cfg.get("name") or f"{datamodule.name}_{model.kind}"
    record["training"]["command"] = _command()
    record["training"]["dataset_config"] = OmegaConf.to_container(cfg.dataset, resolve=True)
    path = save_extractor(model, record, Path(cfg.save_dir) / name)
    if model.kind == "classifier":
        score = f"held-out accuracy {record['heldout_accuracy']:.4f} ({record['num_heldout']} images)"
    else:
        score = f"held-out reconstruction MSE {record['heldout_mse']:.5f} ({record['num_heldout']} images)"
    print(f"{model.kind} extractor {name!r}: {score}; saved to {path}")
    metrics = {k: record[k] for k in ("heldout_accuracy", "heldout_mse") if record[k] is not None}
    return metrics, {"model": model, "path": path, "record": record}


@entry_point("fit_extractor")
def main(cfg: DictConfig) -> Any:
    return run(cfg)


if __name__ == "__main__":
    main()
