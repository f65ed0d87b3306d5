"""Datasets as LightningDataModules; images are (C, H, W) floats in [-1, 1].

``digits`` is scikit-learn's bundled 8x8 handwritten digits (nothing is downloaded). Every
other dataset reads from local disk (torchvision's own dataset classes, ``download=False``,
a plain image folder, CelebA's partition file, train/ + val/ folders, or COCO captions) and
fails with a one-line message saying where it looked. Every module resizes through one
:class:`ImageTransform` (optional crop box, interpolation, crop-or-stretch aspect).
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
import zipfile
from collections.abc import Sequence
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
        return epoch_seeded_loader(self, self.split("train"), self.batch_size, self.shuffle_seed, self.num_workers)

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


def epoch_seeded_loader(
    datamodule: L.LightningDataModule, dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0
) -> DataLoader:
    """Training batches of ``dataset`` in an order that is a function of (seed, trainer epoch)
    only, split across the processes of a distributed run; the last partial batch dropped."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    sampler = _EpochSeededSampler(
        datamodule,
        dataset,
        num_replicas=torch.distributed.get_world_size() if distributed else 1,
        rank=torch.distributed.get_rank() if distributed else 0,
        shuffle=True, seed=seed, drop_last=True,
    )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
        num_workers=num_workers, persistent_workers=num_workers > 0,
    )


class _EpochSeededSampler(DistributedSampler):
    """A seeded shuffle whose order is a function of (seed, trainer epoch) only.

    The epoch is read from the attached trainer at iteration time rather than trusted from
    ``set_epoch``: on resuming from an epoch-end checkpoint Lightning calls ``set_epoch`` one
    epoch ahead of ``current_epoch``. One replica when not distributed.
    """

    def __init__(self, datamodule: L.LightningDataModule, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def __iter__(self):
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


class NpzImagesDataModule(ImageDataModule):
    """Images shipped as one npz (``images``: (N, H, W, C) uint8), split train / held-out.

    Items are ``(image (C, H, W) in [-1, 1], -1)`` (no labels). The embedded 32 px task
    (``dataset=emoji32``) is such a file, written by ``python -m morse_exp.emoji32``.

    Args:
        path: the npz file.
        build_command: the command that (re)builds the file, named when it is missing or unreadable.
        heldout_fraction: share of the images in the held-out split.
        split_seed: seed of the fixed split.
        name: the dataset's name in results and extractor names.
        image_shape: (C, H, W) the file must hold; checked when the file is read.
    """

    has_labels = False

    def __init__(
        self,
        path: str,
        image_shape: Sequence[int],
        build_command: str,
        name: str = "images",
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        _check_heldout_fraction(heldout_fraction)
        self.path = Path(path)
        self.image_shape = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        self.build_command = build_command
        self.name = name
        self.heldout_fraction = heldout_fraction
        self.split_seed = split_seed

    def all_images(self) -> np.ndarray:
        """Every image of the file, (N, H, W, C) uint8; one-line errors naming the build command."""
        if not self.path.is_file():
            raise DatasetNotFoundError(f"{self.path} does not exist: build it with {self.build_command}")
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                images = archive["images"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise DatasetNotFoundError(
                f"{self.path} is not a readable images npz ({type(error).__name__}): rebuild it with "
                f"{self.build_command}"
            ) from error
        channels, height, width = self.image_shape
        if images.dtype != np.uint8 or images.shape[1:] != (height, width, channels) or len(images) < 2:
            raise DatasetNotFoundError(
                f"{self.path} holds {images.dtype} images of shape {images.shape}, not at least 2 uint8 "
                f"images of shape (N, {height}, {width}, {channels}): rebuild it with {self.build_command}"
            )
        return images

    def load_split(self, split: str) -> Dataset:
        images = self.all_images()
        index = _fraction_split(len(images), self.heldout_fraction, self.split_seed, split)
        chosen = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return TensorDataset(chosen, torch.full((len(index),), -1, dtype=torch.int64))


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
ASPECTS = ("crop", "stretch")


class ImageTransform:
    """A PIL image -> a ``(channels, size, size)`` float tensor in [-1, 1].

    Steps: convert to RGB (``channels=3``) or greyscale (``channels=1``); cut out
    ``crop_box = [top, left, height, width]`` (pixels of the stored image) if given; resize
    with ``interpolation`` (PIL's filters; ``box`` is area averaging), either the shorter side
    to ``size`` then a center crop (``aspect="crop"``) or the whole image to ``size`` x ``size``
    (``aspect="stretch"``, aspect ratio not kept). A plain class, so DataLoader workers can
    pickle it.
    """

    def __init__(
        self,
        size: int,
        channels: int = 3,
        crop_box: Sequence[int] | None = None,
        interpolation: str = "bilinear",
        aspect: str = "crop",
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size={size!r} is invalid: use a positive integer (pixels)")
        if channels not in (1, 3):
            raise ValueError(f"channels={channels} is invalid: use 1 or 3")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r} is invalid: use one of {', '.join(INTERPOLATIONS)}")
        if aspect not in ASPECTS:
            raise ValueError(f"aspect={aspect!r} is invalid: use one of {', '.join(ASPECTS)}")
        self.size, self.channels, self.interpolation, self.aspect = size, channels, interpolation, aspect
        self.crop_box = None if crop_box is None else _check_crop_box(crop_box)

    def __call__(self, image: Any) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tf

        image = image.convert("RGB" if self.channels == 3 else "L")
        if self.crop_box is not None:
            top, left, height, width = self.crop_box
            if top + height > image.height or left + width > image.width:
                raise ValueError(
                    f"crop_box={list(self.crop_box)} does not fit a {image.width}x{image.height} "
                    f"(width x height) image: use a [top, left, height, width] box inside it"
                )
            image = image.crop((left, top, left + width, top + height))
        mode = InterpolationMode(self.interpolation)
        if self.aspect == "stretch":
            image = tf.resize(image, [self.size, self.size], interpolation=mode)
        else:
            image = tf.center_crop(tf.resize(image, self.size, interpolation=mode), self.size)
        return tf.normalize(tf.to_tensor(image), [0.5] * self.channels, [0.5] * self.channels)


def _check_crop_box(crop_box: Sequence[int]) -> tuple[int, int, int, int]:
    box = tuple(crop_box) if isinstance(crop_box, Sequence) and not isinstance(crop_box, str) else ()
    if (
        len(box) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
        or min(box[:2]) < 0 or min(box[2:]) < 1
    ):
        raise ValueError(
            f"crop_box={crop_box} is invalid: use [top, left, height, width] in pixels "
            f"(top, left >= 0; height, width >= 1) or null"
        )
    return box  # type: ignore[return-value]


def _fraction_split(count: int, heldout_fraction: float, seed: int, split: str) -> list[int]:
    """Sorted indices of ``split`` in a fixed seeded split of ``count`` items; held-out >= 1."""
    order = np.random.default_rng(seed).permutation(count)
    heldout = max(1, round(count * heldout_fraction))
    return sorted(int(i) for i in (order[heldout:] if split == "train" else order[:heldout]))


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _readable(files: list[Path]) -> list[Path]:
    """The files PIL recognises as images (header only); the others are left out with one
    warning that counts them and names the first."""
    from PIL import Image, UnidentifiedImageError

    readable, skipped = [], []
    for path in files:
        try:
            with Image.open(path):
                readable.append(path)
        except (UnidentifiedImageError, OSError):
            skipped.append(path)
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(files)} files are not readable images and are left out "
                      f"(first: {skipped[0]})", stacklevel=2)
    return readable


# torchvision dataset classes that import an optional package (whose ``Error`` they may raise).
_DATASET_PACKAGES = {"LSUN": "lmdb"}


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset class read from ``root`` (never downloaded), resized to ``size``.

    Items: ``(image (channels, size, size) in [-1, 1], label)``.

    Args:
        dataset_class: torchvision.datasets class name (``CIFAR10``, ``CelebA``, ``LSUN``...).
        root: directory holding the data in that class's layout.
        size: output resolution (square); images are resized then center-cropped.
        channels: 3 for RGB.
        train_kwargs / heldout_kwargs: keyword arguments selecting each split
            (e.g. ``{train: true}`` / ``{train: false}`` for CIFAR10).
        crop_box / interpolation: preprocessing, see :class:`ImageTransform`.
        name: the dataset's name in results; default: ``dataset_class`` in lower case.
        has_labels: False when the labels carry no class information (e.g. one LSUN class).
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
        crop_box: Sequence[int] | None = None,
        interpolation: str = "bilinear",
        name: str | None = None,
        has_labels: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        import torchvision

        if dataset_class not in torchvision.datasets.__all__:
            raise ValueError(
                f"dataset_class={dataset_class!r} is invalid: use a torchvision.datasets class "
                f"name (CIFAR10, MNIST, LSUN, ...)"
            )
        self.name = name or dataset_class.lower()
        self.dataset_class = dataset_class
        self.root = root
        self.has_labels = has_labels
        self.image_shape = (channels, size, size)
        self.transform = ImageTransform(size, channels, crop_box, interpolation)
        self.split_kwargs = {"train": dict(train_kwargs or {}), "heldout": dict(heldout_kwargs or {})}

    def load_split(self, split: str) -> Dataset:
        import torchvision

        package_errors = self._package_errors()
        dataset_class = getattr(torchvision.datasets, self.dataset_class)
        kwargs = dict(self.split_kwargs[split])
        if "download" in dataset_class.__init__.__code__.co_varnames:
            kwargs["download"] = False
        try:
            return dataset_class(self.root, transform=self.transform, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError, *package_errors) as error:
            raise DatasetNotFoundError(
                f"{self.dataset_class} not found under dataset.root={Path(self.root).resolve()} "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): this "
                f"machine cannot download it; put the dataset there in torchvision's layout or "
                f"set dataset.root=/path/to/it"
            ) from error

    def _package_errors(self) -> tuple[type[BaseException], ...]:
        """The error class of the optional package the dataset class needs (one line if absent)."""
        package = _DATASET_PACKAGES.get(self.dataset_class)
        if package is None:
            return ()
        try:
            module = importlib.import_module(package)
        except ImportError as error:
            raise DatasetNotFoundError(
                f"torchvision's {self.dataset_class} needs the {package} package, which is not "
                f"installed: pip install {package}, then put the data under "
                f"dataset.root={Path(self.root).resolve()} (or set dataset.root=/path/to/it)"
            ) from error
        return (getattr(module, "Error", OSError),)


class _ImageFiles(Dataset):
    """Image files as ``(transform(image), target)``: ``targets[i]`` (a label or a caption),
    or -1 ("no label") for every file when ``targets`` is None."""

    def __init__(self, files: list[Path], transform: Any, targets: Sequence[Any] | None = None) -> None:
        self.files = files
        self.transform = transform
        self.targets = list(targets) if targets is not None else [-1] * len(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image), self.targets[index]


class ImageFileDataModule(ImageDataModule):
    """Base of the modules that list image files under ``root`` themselves.

    Subclasses implement :meth:`split_files`; items are ``(image (channels, size, size) in
    [-1, 1], target)``, the target being a label (-1: none) or a caption.

    Args:
        root: the dataset's directory.
        size: output resolution (square).
        channels: 3 for RGB, 1 for greyscale.
        crop_box / interpolation / aspect: preprocessing, see :class:`ImageTransform`.
        name: the dataset's name in results and extractor names; default: ``root``'s folder name.
        batch_size / num_workers / shuffle_seed: see :class:`ImageDataModule`.
    """

    has_labels = False

    def __init__(
        self,
        root: str,
        size: int,
        channels: int = 3,
        *,
        crop_box: Sequence[int] | None = None,
        interpolation: str = "bilinear",
        aspect: str = "crop",
        name: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed)
        self.transform = ImageTransform(size, channels, crop_box, interpolation, aspect)
        self.root = root
        self.name = name or Path(root).name or "images"
        self.image_shape = (channels, size, size)

    def root_dir(self) -> Path:
        return Path(self.root).expanduser()

    def split_files(self, split: str) -> tuple[list[Path], list[Any] | None]:
        """The files of ``split`` in item order, and their targets (None: no labels)."""
        raise NotImplementedError

    def load_split(self, split: str) -> Dataset:
        files, targets = self.split_files(split)
        return _ImageFiles(files, self.transform, targets)


class ImageFolderDataModule(ImageFileDataModule):
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
        **kwargs: crop_box, interpolation, aspect, name, batch_size, num_workers,
            shuffle_seed: see :class:`ImageFileDataModule`.
    """

    def __init__(
        self,
        root: str,
        size: int,
        channels: int = 3,
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, size, channels, **kwargs)
        _check_heldout_fraction(heldout_fraction)
        self.heldout_fraction = heldout_fraction
        self.split_seed = split_seed

    def files(self) -> list[Path]:
        root = self.root_dir()
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"image folder dataset.root={root.resolve()} does not exist: put the images there "
                f"or set dataset.root=/path/to/images"
            )
        files = _readable(_image_files(root))
        if len(files) < 2:
            raise DatasetNotFoundError(
                f"image folder dataset.root={root.resolve()} holds {len(files)} image files "
                f"({', '.join(IMAGE_EXTENSIONS)}): need at least 2; set dataset.root=/path/to/images"
            )
        return files

    def split_files(self, split: str) -> tuple[list[Path], None]:
        files = self.files()
        return [files[i] for i in _fraction_split(len(files), self.heldout_fraction, self.split_seed, split)], None


CELEBA_PARTITIONS = {"train": 0, "valid": 1, "test": 2}


class CelebADataModule(ImageFileDataModule):
    """Aligned CelebA (178x218 JPEGs), split by CelebA's own ``list_eval_partition.txt``.

    Reads ``root/img_align_celeba/*.jpg`` and ``root/list_eval_partition.txt`` (lines
    ``000001.jpg 0``: 0 train, 1 valid, 2 test), or both under ``root/celeba/``
    (torchvision's layout), without torchvision's md5 checks. Train is partition 0, held-out
    is ``heldout_partition``; items ``(image (channels, size, size) in [-1, 1], -1)``, in
    partition-file order (the attributes are not read).

    Args:
        heldout_partition: ``"test"`` (partition 2, DDIM's test set) or ``"valid"`` (1).
        **kwargs: root, size, channels, crop_box (``[57, 25, 128, 128]`` for DDIM's 128x128
            face box), interpolation, aspect, name, ...: see :class:`ImageFileDataModule`.
    """

    PARTITION_FILE = "list_eval_partition.txt"
    IMAGE_DIR = "img_align_celeba"

    def __init__(self, root: str, size: int = 64, channels: int = 3, heldout_partition: str = "test", **kwargs: Any) -> None:
        if heldout_partition not in ("valid", "test"):
            raise ValueError(f"heldout_partition={heldout_partition!r} is invalid: use 'valid' or 'test'")
        kwargs.setdefault("name", "celeba")
        super().__init__(root, size, channels, **kwargs)
        self.heldout_partition = heldout_partition

    def data_dir(self) -> Path:
        """``root`` or ``root/celeba``, whichever holds the partition file."""
        root = self.root_dir()
        for folder in (root, root / "celeba"):
            if (folder / self.PARTITION_FILE).is_file():
                return folder
        raise DatasetNotFoundError(
            f"CelebA not found: no {self.PARTITION_FILE} in dataset.root={root.resolve()} (nor in its "
            f"celeba/): put {self.PARTITION_FILE} and {self.IMAGE_DIR}/ there or set dataset.root=/path/to/celeba"
        )

    def partitions(self, folder: Path) -> list[tuple[str, int]]:
        """``(file name, partition)`` pairs of the partition file, in its order."""
        path = folder / self.PARTITION_FILE
        pairs = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{number}: {line!r} is invalid: use '<image file> <partition 0|1|2>'")
            pairs.append((fields[0], int(fields[1])))
        return pairs

    def split_files(self, split: str) -> tuple[list[Path], None]:
        folder = self.data_dir()
        wanted = CELEBA_PARTITIONS["train" if split == "train" else self.heldout_partition]
        names = [name for name, partition in self.partitions(folder) if partition == wanted]
        images = folder / self.IMAGE_DIR
        present = set(os.listdir(images)) if images.is_dir() else set()
        missing = [name for name in names if name not in present]
        if not names or missing:
            raise DatasetNotFoundError(
                f"CelebA {split} split (partition {wanted}): {len(missing)} of the {len(names)} images "
                f"that {self.PARTITION_FILE} lists are missing from {images.resolve()}"
                f"{f' (first: {missing[0]})' if missing else ''}: put the aligned 178x218 JPEGs there "
                f"or set dataset.root=/path/to/celeba"
            )
        return [images / name for name in names], None


class TrainValFolderDataModule(ImageFileDataModule):
    """Images already split into ``root/<train_dir>/`` and ``root/<heldout_dir>/`` (any depth).

    With ``labels=True`` an image's label is the index, among the sorted sub-folders of
    ``train_dir``, of the sub-folder it lies in (ImageNet's ``train/n01440764/...``); an image
    directly in its split folder or in a folder unknown to ``train_dir`` (a flat ``val/``) gets
    -1. Items: ``(image (channels, size, size) in [-1, 1], label)``, files sorted by path.

    Args:
        train_dir / heldout_dir: the split folders, relative to ``root``.
        labels: read class labels from the folders (else every label is -1).
        **kwargs: root, size, channels, crop_box, interpolation, aspect, name, ...: see
            :class:`ImageFileDataModule`.
    """

    def __init__(
        self,
        root: str,
        size: int,
        channels: int = 3,
        train_dir: str = "train",
        heldout_dir: str = "val",
        labels: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, size, channels, **kwargs)
        self.split_dirs = {"train": train_dir, "heldout": heldout_dir}
        self.has_labels = labels

    def classes(self) -> list[str]:
        """The class names: the sorted sub-folders of ``train_dir`` (none if it is absent)."""
        train = self.root_dir() / self.split_dirs["train"]
        return sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []

    def split_files(self, split: str) -> tuple[list[Path], list[int] | None]:
        root, folder_name = self.root_dir(), self.split_dirs[split]
        folder = root / folder_name
        files = _image_files(folder) if folder.is_dir() else []
        if not files:
            raise DatasetNotFoundError(
                f"no image files in {folder_name}/ under dataset.root={root.resolve()}: lay the images out "
                f"as dataset.root/{self.split_dirs['train']}/... and dataset.root/{self.split_dirs['heldout']}/... "
                f"or set dataset.root=/path/to/them"
            )
        if not self.has_labels:
            return files, None
        index = {name: i for i, name in enumerate(self.classes())}
        parts = [f.relative_to(folder).parts for f in files]
        return files, [index.get(p[0], -1) if len(p) > 1 else -1 for p in parts]


class CocoCaptionsDataModule(ImageFileDataModule):
    """MS-COCO images with one caption each, for text-to-image evaluation (no pycocotools).

    Reads COCO's own ``root/annotations/captions_<subset>.json`` (``"images": [{"id",
    "file_name"}]``, ``"annotations": [{"image_id", "caption"}]``) and the images
    ``root/<subset>/<file_name>``. Each image keeps its first caption in annotation order
    (whitespace-stripped). The captioned images present on disk, ordered by image id, are split
    train / held-out by a fixed seeded ``heldout_fraction`` (as :class:`ImageFolderDataModule`).
    Items: ``(image (channels, size, size) in [-1, 1], caption str)``, so the default collate
    gives ``(images (B, channels, size, size), list[str])``; :meth:`captions` lists a split's.

    Args:
        subset: COCO's subset name (``val2014``, ``train2014``, ``val2017``...).
        heldout_fraction: share of the images in the held-out split.
        split_seed: seed of the fixed split.
        **kwargs: root, size, channels, crop_box, interpolation, aspect, name, ...: see
            :class:`ImageFileDataModule`.
    """

    def __init__(
        self,
        root: str,
        size: int = 512,
        channels: int = 3,
        subset: str = "val2014",
        heldout_fraction: float = 0.5,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "coco")
        super().__init__(root, size, channels, **kwargs)
        _check_heldout_fraction(heldout_fraction)
        self.subset = subset
        self.heldout_fraction = heldout_fraction
        self.split_seed = split_seed

    def captioned_images(self) -> list[tuple[Path, str]]:
        """``(image file, first caption)`` of every captioned image on disk, by image id."""
        root = self.root_dir()
        path = root / "annotations" / f"captions_{self.subset}.json"
        images = root / self.subset
        if not path.is_file() or not images.is_dir():
            raise DatasetNotFoundError(
                f"COCO captions not found: need annotations/captions_{self.subset}.json and {self.subset}/ "
                f"under dataset.root={root.resolve()}: put COCO's files there or set dataset.root=/path/to/coco"
            )
        try:
            data = json.loads(path.read_text())
            files = {int(image["id"]): image["file_name"] for image in data["images"]}
            captions: dict[int, str] = {}
            for note in data["annotations"]:
                captions.setdefault(int(note["image_id"]), str(note["caption"]).strip())
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is invalid ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}): "
                f"use COCO's captions JSON with images [{{id, file_name}}] and annotations [{{image_id, caption}}]"
            ) from error
        present = set(os.listdir(images))
        pairs = [(images / files[i], captions[i]) for i in sorted(captions) if files.get(i) in present]
        if len(pairs) < 2:
            raise DatasetNotFoundError(
                f"COCO: {len(pairs)} captioned images of {path.name} are in {images.resolve()}: need at least 2; "
                f"put the images there or set dataset.root=/path/to/coco"
            )
        return pairs

    def split_files(self, split: str) -> tuple[list[Path], list[str]]:
        pairs = self.captioned_images()
        chosen = [pairs[i] for i in _fraction_split(len(pairs), self.heldout_fraction, self.split_seed, split)]
        return [file for file, _ in chosen], [caption for _, caption in chosen]

    def captions(self, split: str) -> list[str]:
        """The captions of ``split`` in item order (sample i is evaluated against caption i)."""
        return list(self.split(split).targets)
