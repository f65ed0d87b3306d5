"""Datasets as LightningDataModules; images are (C, H, W) floats in [-1, 1].

``digits`` is scikit-learn's bundled 8x8 handwritten digits (nothing is downloaded). Every
other dataset reads from local disk (torchvision's own dataset classes, ``download=False``,
or a plain image folder) and fails with a one-line message saying where it looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on local disk (message is one line, with how to provide it)."""


class ImageDataModule(L.LightningDataModule):
    """Train / held-out loaders over (image, label) pairs.

    Subclasses implement :meth:`load_split` returning a ``Dataset`` of
    ``(image (C, H, W) in [-1, 1], label int)`` for ``"train"`` or ``"heldout"``.

    Args:
        batch_size: samples per training batch (per process).
        num_workers: DataLoader worker processes.
        shuffle_seed: seed of the training order; epoch e's order is a function of
            (shuffle_seed, e) only, so a resumed run sees the same batches.
    """

    name = "dataset"
    image_shape: tuple[int, int, int]

    def __init__(self, batch_size: int = 128, num_workers: int = 0, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_seed = shuffle_seed
        self._splits: dict[str, Dataset] = {}

    def load_split(self, split: str) -> Dataset:
        raise NotImplementedError

    def split(self, split: str) -> Dataset:
        """The ``"train"`` or ``"heldout"`` split, loaded once."""
        if split not in ("train", "heldout"):
            raise ValueError(f"split {split!r} is invalid: use 'train' or 'heldout'")
        if split not in self._splits:
            self._splits[split] = self.load_split(split)
        return self._splits[split]

    def check_available(self) -> None:
        """Raise :class:`DatasetNotFoundError` now if the data is not on disk."""
        self.split("train")

    def train_dataloader(self) -> DataLoader:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = _EpochSeededSampler(
            self,
            self.split("train"),
            num_replicas=torch.distributed.get_world_size() if distributed else 1,
            rank=torch.distributed.get_rank() if distributed else 0,
            shuffle=True, seed=self.shuffle_seed, drop_last=True,
        )
        return DataLoader(
            self.split("train"), batch_size=self.batch_size, sampler=sampler, drop_last=True,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.split("heldout"), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers,
        )

    def images(self, split: str, limit: int | None = None) -> torch.Tensor:
        """All (or the first ``limit``) images of a split stacked: (N, C, H, W) in [-1, 1]."""
        data = self.split(split)
        count = len(data) if limit is None else min(limit, len(data))
        return torch.stack([data[i][0] for i in range(count)])


def _check_heldout_fraction(value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"heldout_fraction={value} is invalid: use a value in (0, 1)")


class _EpochSeededSampler(DistributedSampler):
    """A seeded shuffle whose order is a function of (seed, trainer epoch) only.

    The epoch is read from the attached trainer at iteration time rather than trusted from
    ``set_epoch``: on resuming from an epoch-end checkpoint Lightning calls ``set_epoch`` one
    epoch ahead of ``current_epoch``. One replica when not distributed.
    """

    def __init__(self, datamodule: L.LightningDataModule, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def __iter__(self):  # noqa: ANN204
        trainer = getattr(self.datamodule, "trainer", None)
        if trainer is not None:
            self.epoch = trainer.current_epoch
        return super().__iter__()


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 bundled 8x8 digits, (1, 8, 8), split train / held-out.

    Args:
        heldout_fraction: share of the images in the held-out split (stratified by class).
        split_seed: seed of the fixed split.
    """

    name = "digits"
    image_shape = (1, 8, 8)

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle_seed: int = 0,
        heldout_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        _check_heldout_fraction(heldout_fraction)
        self.heldout_fraction = heldout_fraction
        self.split_seed = split_seed

    def load_split(self, split: str) -> Dataset:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0
        train_idx, heldout_idx = train_test_split(
            np.arange(len(images)), test_size=self.heldout_fraction,
            random_state=self.split_seed, stratify=digits.target,
        )
        index = train_idx if split == "train" else heldout_idx
        return TensorDataset(
            torch.from_numpy(images[index]).unsqueeze(1),
            torch.from_numpy(digits.target[index].astype(np.int64)),
        )


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset class read from ``root`` (never downloaded), resized to ``size``.

    Args:
        dataset_class: torchvision.datasets class name (``CIFAR10``, ``CelebA``, ``LSUN``...).
        root: directory holding the data in that class's layout.
        size: output resolution (square); images are resized then center-cropped.
        channels: 3 for RGB.
        train_kwargs / heldout_kwargs: keyword arguments selecting each split
            (e.g. ``{train: true}`` / ``{train: false}`` for CIFAR10).
    """

    def __init__(
        self,
        dataset_class: str,
        root: str,
        size: int,
        channels: int = 3,
        train_kwargs: dict[str, Any] | None = None,
        heldout_kwargs: dict[str, Any] | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        self.name = dataset_class.lower()
        self.dataset_class = dataset_class
        self.root = root
        self.image_shape = (channels, size, size)
        self.split_kwargs = {"train": dict(train_kwargs or {}), "heldout": dict(heldout_kwargs or {})}

    def load_split(self, split: str) -> Dataset:
        import torchvision
        from torchvision import transforms

        size = self.image_shape[1]
        transform = transforms.Compose([
            transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
            transforms.Normalize([0.5] * self.image_shape[0], [0.5] * self.image_shape[0]),
        ])
        dataset_class = getattr(torchvision.datasets, self.dataset_class)
        kwargs = dict(self.split_kwargs[split])
        if "download" in dataset_class.__init__.__code__.co_varnames:
            kwargs["download"] = False
        try:
            return dataset_class(self.root, transform=transform, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError) as error:
            raise DatasetNotFoundError(
                f"{self.dataset_class} not found under dataset.root={Path(self.root).resolve()} "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): this "
                f"machine cannot download it; put the dataset there in torchvision's layout or "
                f"set dataset.root=/path/to/it"
            ) from error


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class _ImageFiles(Dataset):
    def __init__(self, files: list[Path], transform: Any) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image), -1


class ImageFolderDataModule(ImageDataModule):
    """Unlabelled images under ``root`` (searched recursively), split train / held-out.

    Items are ``(image (C, size, size) in [-1, 1], -1)``: the label -1 means "no label"
    (``has_labels = False``). Images are converted to RGB (``channels=3``) or greyscale
    (``channels=1``), resized (shorter side) then center-cropped to ``size``.

    Args:
        root: directory with image files (png, jpg, jpeg, bmp, webp).
        size: output resolution (square).
        channels: 3 for RGB, 1 for greyscale.
        heldout_fraction: share of the files in the held-out split.
        split_seed: seed of the fixed split.
        shuffle_seed: seed of the training order (see :class:`ImageDataModule`).
    """

    has_labels = False

    def __init__(
        self,
        root: str,
        size: int,
        channels: int = 3,
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        if channels not in (1, 3):
            raise ValueError(f"channels={channels} is invalid: use 1 or 3")
        _check_heldout_fraction(heldout_fraction)
        self.root = root
        self.name = Path(root).name or "images"
        self.image_shape = (channels, size, size)
        self.heldout_fraction = heldout_fraction
        self.split_seed = split_seed

    def files(self) -> list[Path]:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"image folder dataset.root={root.resolve()} does not exist")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if len(files) < 2:
            raise DatasetNotFoundError(
                f"image folder dataset.root={root.resolve()} holds {len(files)} image files "
                f"({', '.join(IMAGE_EXTENSIONS)}): need at least 2"
            )
        return files

    def load_split(self, split: str) -> Dataset:
        from torchvision import transforms

        files = self.files()
        order = np.random.default_rng(self.split_seed).permutation(len(files))
        count = max(1, int(round(len(files) * self.heldout_fraction)))
        index = order[count:] if split == "train" else order[:count]
        channels, size, _ = self.image_shape
        transform = transforms.Compose([
            transforms.Lambda(lambda image: image.convert("RGB" if channels == 3 else "L")),
            transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
            transforms.Normalize([0.5] * channels, [0.5] * channels),
        ])
        return _ImageFiles([files[i] for i in sorted(index)], transform)
