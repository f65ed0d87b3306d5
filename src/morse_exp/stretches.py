"""Dash's trajectory stretches computed once, then reused for many Dot training steps.

A live training step (``stretches=live``) spends most of its time in Dash: for every group of
a batch one Dash call at the jump point and one per Dot step for the targets, against one
cheap Dot call per Dot step. ``stretches=cached`` computes those Dash calls once: ``passes``
times over the training images, each group of ``batch_size / draws_per_batch`` images gets its
own (n, s[, sampler]) draw exactly as in live training, and every Dot step of the stretch is
stored as one example (x_ts, z_ts, t_s, x_ti, t_i, target). A training step then draws
``batch_size`` examples and runs Dot alone.

Exact for the first Dot step after each jump point, whose state depends on Dash alone: with
a stride-2 pattern (K = 2) every Dot step is one, and the cache trains what live rollouts
train, on ``passes`` noise draws per image instead of a fresh one every step. A later Dot step's state depends on the estimates of the Dot steps before it,
which at inference are the Dot's own; a cache cannot hold those while the Dot trains, so it
steps on with the jump point's estimate (``stepping="reuse"``: the states of an untrained
Dot) or with Dash's target at the step (``"teacher"``: the states of a perfect Dot). Both
differ from the states the Dot meets: a reuse-state Dot has learned corrections that its own
earlier steps already made, and a teacher state carries the previous step's target, which
the next one is close to. A Dot that can read either off its inputs does, and does worse on
its own trajectory (experiments/emoji32/RESULTS.md, "Cached stretches"). ``"own"`` steps with
the estimates of the Dot the run starts from (``init_from``; an untrained Dot's are reuse's):
the states that Dot meets at inference, so a run continued from its own last Dot refreshes
the cache towards the trained Dot's states, as DAgger refreshes its data set with the
current policy's. Validation stays live (held-out images, the Dot's own estimates), so it
reports what inference gets.
The cache is a safetensors file under ``<cache_dir>/stretches/``, named by a hash of
everything that decides it (Dash weights, samplers, step range, gaps, group size, passes,
stepping and, for ``"own"``, the Dot's starting weights, seed, data set), written atomically
and reused by every later run with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import lightning as L
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from morse_exp.atomic import write_atomic
from morse_exp.checkpoints import dot_fingerprint
from morse_exp.data import ImageDataModule, epoch_seeded_loader
from morse_exp.module import STEPPINGS, MorseModule, StretchStep
from morse_exp.progress import Progress
from morse_exp.seeding import sample_seed

STEP_KEYS = ("x_ts", "z_ts", "t_s", "x_ti", "t_i", "target")
STREAM_OFFSET = 2 * 10**9  # random streams of the passes: clear of training's and validation's
TEXT_REFUSED = ("stretches=cached is invalid for a text-conditioned Dash (its captions are not cached): "
                "use stretches=live")


class StretchDataset(Dataset):
    """Cached Dot steps: item i is a dict of the keys of ``STEP_KEYS`` (and ``context``, the
    class label, for a class-conditional Dash): (C, H, W) tensors and scalar timesteps."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["t_s"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def build_stretches(
    module: MorseModule, images: Dataset, group_size: int, passes: int, stepping: str = "reuse"
) -> dict[str, Tensor]:
    """Walk Dash's stretches ``passes`` times over ``images``; every Dot step is an example.

    Args:
        module: the training module (its Dash, samplers, draws, gaps and seed).
        images: the training split: (image (C, H, W) in [-1, 1], label) pairs.
        group_size: images per (n, s) draw, as in a live batch (batch / draws_per_batch).
        passes: how many times every image is noised and walked (each with its own draws).
        stepping: what the sampler steps on with between Dot steps: "reuse" (z_ts), "own"
            (the estimates of ``module.dot`` as it is now) or "teacher" (Dash's target at the
            step; an ablation, see the module docstring).

    Returns:
        name -> stacked tensor: (E, C, H, W) for x_ts, z_ts, x_ti, target; (E,) float32 for
        t_s, t_i (and int64 ``context`` for a class-conditional Dash); E = examples.
    """
    conditioning = module.dash.conditioning
    if conditioning == "text":
        raise ValueError(TEXT_REFUSED)
    columns: dict[str, list[Tensor]] = {key: [] for key in STEP_KEYS}
    if conditioning == "class":
        columns["context"] = []
    progress = Progress("stretches (Dash calls, cached once)", passes * len(images))
    with torch.no_grad():
        for pass_index in range(passes):
            generator = torch.Generator("cpu").manual_seed(sample_seed(module.seed, STREAM_OFFSET + pass_index))
            order = torch.randperm(len(images), generator=generator)
            for rows in order.split(group_size):
                pairs = [images[i] for i in rows.tolist()]
                batch = torch.stack([image for image, _ in pairs]).to(module.device)
                labels = torch.as_tensor([int(label) for _, label in pairs]) if conditioning else None
                n, s, *sampler = module.draw(generator)

                def keep(step: StretchStep, labels: Tensor | None = labels) -> Tensor:
                    size = len(step.x_ti)
                    for key in ("x_ts", "z_ts", "x_ti", "target"):
                        columns[key].append(getattr(step, key).float().cpu())
                    for key in ("t_s", "t_i"):
                        columns[key].append(getattr(step, key).float().cpu().expand(size))
                    if labels is not None:
                        columns["context"].append(labels)
                    return step.stepped_with(stepping, own=module.dot_estimate(step) if stepping == "own" else None)

                module.walk_stretch(batch, labels, n, s, generator, keep, *sampler)
                progress.update(len(rows))
    progress.close()
    return {key: torch.cat(values) for key, values in columns.items()}


class StretchDataModule(L.LightningDataModule):
    """Training batches of cached Dash stretches; validation from the image data set.

    Args:
        images: the image data module (its training split is walked; its held-out split
            validates, live).
        module: the training module the stretches are built for.
        cache_dir: where the cache file lives (``<cache_dir>/stretches/<hash>.safetensors``).
        passes: walks over the training images (>= 1); more passes, more distinct noise.
        stepping: "reuse", "own" or "teacher" (:func:`build_stretches`); "own" uses the Dot's
            weights when the cache is first located, in ``prepare_data``: those it starts
            from (``init_from``), also in a resumed run (Lightning restores a checkpoint's
            weights after ``prepare_data`` and ``setup``).
    """

    def __init__(
        self, images: ImageDataModule, module: MorseModule, cache_dir: str | Path, passes: int = 4,
        stepping: str = "reuse",
    ) -> None:
        super().__init__()
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"stretches.passes={passes!r} is invalid: use an integer >= 1")
        if stepping not in STEPPINGS:
            raise ValueError(f"stretches.stepping={stepping!r} is invalid: use one of {', '.join(STEPPINGS)}")
        if module.dash.conditioning == "text":
            raise ValueError(TEXT_REFUSED)
        if module.jump_states != "forward":
            raise ValueError(f"module.jump_states={module.jump_states} is invalid with stretches=cached: its "
                             "states come from the Dot being trained; use module.jump_states=forward or stretches=live")
        if module.max_gap > 2:
            warnings.warn(
                f"stretches=cached with gaps up to {module.max_gap - 1}: the Dot steps after the first of each stretch "
                f"train on {stepping} states, not on those of the Dot being trained (exact only for stride 2; "
                "stretches=live is)",
                stacklevel=2,
            )
        self.images, self.module, self.passes, self.stepping = images, module, passes, stepping
        self.batch_size = images.batch_size
        self.group_size = max(1, images.batch_size // module.draws_per_batch)
        self.cache_dir = Path(cache_dir)
        self._path: Path | None = None
        self.dataset: StretchDataset | None = None

    @property
    def path(self) -> Path:
        """The cache file, ``<cache_dir>/stretches/<key>.safetensors``; fixed when first read."""
        if self._path is None:
            self._path = self.cache_dir / "stretches" / f"{self.key()}.safetensors"
        return self._path

    def key(self) -> str:
        """Hash of everything the cached stretches depend on."""
        config = self.module.run_config
        decided_by = {
            "dash": self.module.dash_fingerprint,
            "dataset": config.get("dataset"),
            "scheduler": config.get("scheduler"),
            "extra_schedulers": config.get("extra_schedulers"),
            "fine_steps": list(self.module.fine_steps),
            "max_gap": self.module.max_gap,
            "group_size": self.group_size,
            "passes": self.passes,
            "stepping": self.stepping,
            # the Dot whose estimates the sampler steps on with
            "dot": dot_fingerprint(self.module.dot) if self.stepping == "own" else None,
            "seed": self.module.seed,
        }
        if self.module.dot.base != "eps":  # the base decides reuse's and own stepping (eps: the keys from before bases)
            decided_by["dot_base"] = self.module.dot.base
        return hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def prepare_data(self) -> None:
        """Build and write the cache unless a readable one is there (one process per node)."""
        if self._readable():
            print(f"stretches: reusing {self.path}")
            return
        if self.trainer is not None:
            self.module.to(self.trainer.strategy.root_device)  # Dash runs where training will
        tensors = build_stretches(self.module, self.images.split("train"), self.group_size, self.passes, self.stepping)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, save({key: value.contiguous() for key, value in tensors.items()}))
        size = sum(value.numel() * value.element_size() for value in tensors.values())
        print(f"stretches: {len(tensors['t_s'])} Dot steps ({size / 2**30:.2f} GiB) cached in {self.path}")

    def _readable(self) -> bool:
        if not self.path.is_file():
            return False
        try:
            with safe_open(self.path, "pt"):
                pass
        except (SafetensorError, OSError) as error:
            print(f"stretches: rebuilding {self.path}, which is unreadable ({error})")
            return False
        return True

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = StretchDataset(load_file(self.path))
            if len(self.dataset) < self.batch_size:
                raise ValueError(f"the cache holds {len(self.dataset)} Dot steps, fewer than dataset.batch_size="
                                 f"{self.batch_size}: raise stretches.passes")

    def train_dataloader(self) -> DataLoader:
        return epoch_seeded_loader(self, self.dataset, self.batch_size, self.images.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        return self.images.val_dataloader()
