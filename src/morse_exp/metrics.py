"""FID and KID of samples, computed by torch-fidelity in a chosen extractor's feature space.

:class:`QualityMetrics` wraps ``torch_fidelity.calculate_metrics``: samples and reference
images (N, C, H, W) in [-1, 1] become datasets of uint8 images (what torch-fidelity's
extractors take), the extractor is a project one (:mod:`morse_exp.extractors`, registered in
torch-fidelity's registry) or torch-fidelity's ``inception-v3-compat`` (local weights file).

Reference features and FID statistics are cached by torch-fidelity itself (``cache_root`` =
the cache directory, ``input2_cache_name`` = a name that hashes the dataset name, its
settings, the split, the extractor name, the sha256 of its weights and the reference count),
so they are computed once per (reference, extractor). torch-fidelity writes them with
``torch.save`` and reads them back with ``weights_only=False``: keep the cache directory
private to the project.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from morse_exp.extractors import (
    INCEPTION,
    INCEPTION_FEATURE_DIM,
    LoadedExtractor,
    check_image_shape,
    check_inception_weights,
    file_sha256,
    load_extractor,
    register_with_fidelity,
)

KID_SUBSET_SIZE = 1000
VERBOSE_FROM = 5000  # show torch-fidelity's progress bars from this many samples on
_IGNORED_DATAMODULE_FIELDS = {"batch_size", "num_workers", "shuffle_seed", "prepare_data_per_node",
                              "allow_zero_length_dataloader_with_multiple_devices"}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> uint8 in [0, 255] (clamped, rounded)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class Uint8Images(Dataset):
    """A tensor of images in [-1, 1] served as uint8 (C, H, W), as torch-fidelity wants.

    ``to_rgb`` repeats a single channel three times (for ``inception-v3-compat``).
    """

    def __init__(self, images: torch.Tensor, to_rgb: bool = False) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        self.images = images if images.dtype == torch.uint8 else to_uint8(images)
        self.to_rgb = to_rgb and self.images.shape[1] == 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        return image.expand(3, -1, -1).contiguous() if self.to_rgb else image


class SplitImages(Dataset):
    """Images ``indices`` of a datamodule split, read lazily as uint8 (C, H, W).

    Lazy so that a cached reference never touches the data.
    """

    def __init__(self, datamodule: Any, split: str, indices: list[int], to_rgb: bool = False) -> None:
        self.datamodule, self.split, self.indices = datamodule, split, indices
        self.to_rgb = to_rgb and datamodule.image_shape[0] == 1

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = to_uint8(self.datamodule.split(self.split)[self.indices[index]][0][None])[0]
        return image.expand(3, -1, -1).contiguous() if self.to_rgb else image


# What torch-fidelity's cached reference statistics may hold besides tensors: numpy arrays.
_SAFE_NUMPY = [getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct, np.ndarray, np.dtype,
               type(np.dtype(np.float32)), type(np.dtype(np.float64))]


def check_cache(cache_dir: Path, cache_name: str) -> None:
    """Make torch-fidelity's cache safe to read before it reads it.

    torch-fidelity loads its cache with ``torch.load(weights_only=False)``, which runs any
    pickle. So the cache directory must belong to the user (it is made private, 0700), and
    every cached file of this reference must load under ``weights_only=True`` (tensors and
    numpy arrays only); one that does not is deleted, with a warning, and recomputed: a
    planted payload never runs.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    owner = cache_dir.stat().st_uid
    if owner != os.getuid():
        raise ValueError(f"metric.cache_dir={cache_dir} belongs to another user (uid {owner}): use a cache "
                         "directory of your own")
    os.chmod(cache_dir, 0o700)
    for path in sorted(cache_dir.glob(f"{cache_name}-*.pt")):
        try:
            with torch.serialization.safe_globals(_SAFE_NUMPY):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001  (any refusal: the file is not plain data)
            warnings.warn(f"{path} holds more than tensors and arrays: deleted, it will be recomputed", stacklevel=2)
            path.unlink()


class QualityMetrics:
    """FID and KID of samples against a reference set, in an extractor's feature space.

    Give the reference either as ``datamodule`` + ``reference_split`` or as a tensor
    ``reference`` (N, C, H, W) in [-1, 1].

    Args:
        extractor: name of a project extractor (``digits_classifier``, one trained with
            ``morse_exp.fit_extractor``) or ``inception-v3-compat``.
        datamodule: an :class:`morse_exp.data.ImageDataModule` holding the reference images.
        reference_split: ``"train"`` or ``"heldout"``.
        reference: reference images instead of a datamodule.
        num_reference: use this many reference images (a fixed random subset; None: all).
        num_samples: how many samples the caller should draw (read by the evaluate command;
            :meth:`compute` scores whatever it is given).
        cache_dir: where torch-fidelity caches reference features and statistics.
        extractors_dir: where trained extractors live (shipped ones are found regardless).
        inception_weights: local path of torch-fidelity's Inception weights (for
            ``inception-v3-compat`` only).
        kid_subsets: KID subsets; the KID subset size is min(1000, #samples, #reference).
        batch_size: images per feature-extraction batch.
        device: ``"cuda"`` or ``"cpu"``; None: CUDA when available.
        verbose: torch-fidelity's progress output; None: on from 5,000 samples.
        seed: torch-fidelity's ``rng_seed`` (KID subsets) and the reference subset seed.
    """

    def __init__(
        self,
        extractor: str = "digits_classifier",
        datamodule: Any = None,
        reference_split: str = "train",
        reference: torch.Tensor | None = None,
        num_reference: int | None = None,
        num_samples: int = 2000,
        cache_dir: str | Path = "outputs/cache/metrics",
        extractors_dir: str | Path | None = None,
        inception_weights: str | Path | None = None,
        kid_subsets: int = 100,
        batch_size: int = 500,
        device: str | None = None,
        verbose: bool | None = None,
        seed: int = 2020,
    ) -> None:
        if not extractor:
            raise ValueError(
                "metric.extractor is not set: no shipped feature extractor knows this dataset; fit one with "
                "python -m morse_exp.fit_extractor dataset=<this dataset> name=<name>, then set "
                "metric.extractor=<name> (or metric=inception for RGB images)"
            )
        if (datamodule is None) == (reference is None):
            raise ValueError("QualityMetrics needs exactly one reference: datamodule=... (with reference_split) or reference=<tensor>")
        if reference_split not in ("train", "heldout"):
            raise ValueError(f"reference_split={reference_split!r} is invalid: use 'train' or 'heldout'")
        self.extractor_name = extractor
        self.datamodule = datamodule
        self.reference_split = reference_split
        self.reference = reference
        self.num_reference = num_reference
        self.num_samples = num_samples
        self.cache_dir = Path(cache_dir)
        self.extractors_dir = extractors_dir
        self.inception_weights = inception_weights
        self.kid_subsets = kid_subsets
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose
        self.seed = seed
        self._extractor: LoadedExtractor | None = None
        self._sha256: str | None = None

    # ---------------------------------------------------------------- extractor ----
    @property
    def is_inception(self) -> bool:
        return self.extractor_name == INCEPTION

    @property
    def extractor(self) -> LoadedExtractor | None:
        """The loaded project extractor (None for Inception); loaded and verified once."""
        if self._extractor is None and not self.is_inception:
            self._extractor = load_extractor(self.extractor_name, self.extractors_dir)
        return self._extractor

    @property
    def feature_dim(self) -> int:
        return INCEPTION_FEATURE_DIM if self.is_inception else self.extractor.feature_dim

    @property
    def min_samples(self) -> int:
        """Fewest samples (and reference images) with a non-singular FID covariance."""
        return self.feature_dim + 1

    @property
    def extractor_sha256(self) -> str:
        if self._sha256 is None:
            if self.is_inception:
                self._sha256 = file_sha256(check_inception_weights(self.inception_weights))
            else:
                self._sha256 = self.extractor.sha256
        return self._sha256

    def _weights_path(self) -> str:
        if self.is_inception:
            return str(check_inception_weights(self.inception_weights))
        return str(self.extractor.path)

    # ---------------------------------------------------------------- checks -------
    def _check_count(self, count: int, what: str, remedy: str) -> None:
        if count < self.min_samples:
            raise ValueError(
                f"{count} {what} are too few for FID with {self.extractor_name!r} "
                f"({self.feature_dim}-d features, singular covariance): need at least "
                f"{self.min_samples}; {remedy}"
            )

    _REFERENCE_REMEDY = "raise metric.num_reference (null: the whole split) or use a larger reference set"
    _SAMPLES_REMEDY = "raise metric.num_samples"

    def _check_shape(self, shape: tuple[int, ...], what: str) -> None:
        if self.is_inception:
            if shape[0] not in (1, 3):
                raise ValueError(f"{what} have {shape[0]} channels but {INCEPTION} takes 1 (repeated) or 3")
        else:
            check_image_shape(shape, self.extractor, what)

    def _check_reference_shape(self) -> None:
        if self.datamodule is not None:
            self._check_shape(tuple(self.datamodule.image_shape), f"{self.datamodule.name} images")
        else:
            self._check_shape(tuple(self.reference.shape[1:]), "reference images")

    def check(self) -> None:
        """Everything that can fail before sampling: extractor found and verified, Inception
        weights on disk, reference shape and count, ``num_samples`` large enough."""
        if self.is_inception:
            check_inception_weights(self.inception_weights)
        else:
            self.extractor  # noqa: B018  (load + verify the hash)
        self._check_reference_shape()
        self._check_count(len(self._reference_indices()) if self.datamodule is not None
                          else self._reference_count(), "reference images", self._REFERENCE_REMEDY)
        self._check_count(self.num_samples, "samples", self._SAMPLES_REMEDY)

    # ---------------------------------------------------------------- reference ----
    def _reference_count(self) -> int:
        total = len(self.reference)
        return total if self.num_reference is None else min(self.num_reference, total)

    def _reference_indices(self) -> list[int]:
        total = len(self.datamodule.split(self.reference_split))
        if self.num_reference is None or self.num_reference >= total:
            return list(range(total))
        generator = torch.Generator().manual_seed(self.seed)
        return sorted(torch.randperm(total, generator=generator)[: self.num_reference].tolist())

    def _reference_dataset(self) -> tuple[Dataset, str, dict[str, Any]]:
        """(dataset, torch-fidelity cache name, the fields hashed into it)."""
        if self.datamodule is not None:
            indices = self._reference_indices()
            dataset: Dataset = SplitImages(self.datamodule, self.reference_split, indices, self.is_inception)
            name = str(getattr(self.datamodule, "name", type(self.datamodule).__name__))
            settings = {
                k: v for k, v in sorted(vars(self.datamodule).items())
                if not k.startswith("_") and k not in _IGNORED_DATAMODULE_FIELDS
                and isinstance(v, (str, int, float, bool, tuple, list, type(None)))
            }
            key = {"dataset": name, "class": type(self.datamodule).__qualname__, "settings": settings,
                   "split": self.reference_split, "indices": hashlib.sha256(str(indices).encode()).hexdigest()}
            split = self.reference_split
        else:
            count = self._reference_count()
            images = to_uint8(self.reference[:count])
            dataset = Uint8Images(images, self.is_inception)
            name, split = "tensor", "given"
            key = {"dataset": name, "content": hashlib.sha256(images.numpy().tobytes()).hexdigest(),
                   "shape": list(images.shape)}
        key.update({
            "extractor": self.extractor_name, "extractor_sha256": self.extractor_sha256,
            "num_reference": len(dataset), "to_rgb": self.is_inception,
        })
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.]+", "_", name)
        return dataset, f"ref-{safe}-{split}-{len(dataset)}-{digest}", key

    def reference_cache_files(self) -> list[Path]:
        """The torch-fidelity cache files of this reference (present once computed)."""
        _, cache_name, _ = self._reference_dataset()
        return sorted(self.cache_dir.glob(f"{cache_name}-*.pt"))

    # ---------------------------------------------------------------- compute ------
    def compute(self, samples: torch.Tensor) -> dict[str, Any]:
        """FID and KID of ``samples`` (N, C, H, W) in [-1, 1] against the reference.

        Returns ``{fid, kid, kid_std, num_samples, num_reference, extractor,
        extractor_sha256, kid_subset_size, kid_subsets, feature_dim, reference}``.
        """
        import torch_fidelity

        if samples.dim() != 4:
            raise ValueError(f"samples must be (N, C, H, W), got shape {tuple(samples.shape)}")
        self._check_shape(tuple(samples.shape[1:]), "samples")
        self._check_count(len(samples), "samples", self._SAMPLES_REMEDY)
        reference, cache_name, _ = self._reference_dataset()
        self._check_reference_shape()
        self._check_count(len(reference), "reference images", self._REFERENCE_REMEDY)
        kid_subset_size = min(KID_SUBSET_SIZE, len(samples), len(reference))
        check_cache(self.cache_dir, cache_name)
        result = torch_fidelity.calculate_metrics(
            **self._fidelity_inputs(samples, reference, cache_name),
            fid=True,
            kid=True,
            kid_subsets=self.kid_subsets,
            kid_subset_size=kid_subset_size,
            rng_seed=self.seed,
        )
        return {
            "fid": float(result[torch_fidelity.KEY_METRIC_FID]),
            "kid": float(result[torch_fidelity.KEY_METRIC_KID_MEAN]),
            "kid_std": float(result[torch_fidelity.KEY_METRIC_KID_STD]),
            "num_samples": len(samples),
            "num_reference": len(reference),
            "extractor": self.extractor_name,
            "extractor_sha256": self.extractor_sha256,
            "kid_subset_size": kid_subset_size,
            "kid_subsets": self.kid_subsets,
            "feature_dim": self.feature_dim,
            "reference": cache_name,
        }

    __call__ = compute

    def _fidelity_inputs(self, samples: torch.Tensor, reference: Dataset, cache_name: str) -> dict[str, Any]:
        """torch-fidelity's input, extractor and cache arguments for ``samples`` vs the reference."""
        cuda = (self.device == "cuda") if self.device is not None else torch.cuda.is_available()
        return {
            "input1": Uint8Images(samples, self.is_inception),
            "input2": reference,
            "input2_cache_name": cache_name,
            "cache": True,
            "cache_root": str(self.cache_dir),
            "feature_extractor": register_with_fidelity(self.extractor_name),
            "feature_extractor_weights_path": self._weights_path(),
            "batch_size": self.batch_size,
            "cuda": cuda,
            "save_cpu_ram": True,
            "verbose": self.verbose if self.verbose is not None else len(samples) >= VERBOSE_FROM,
        }

    def fid_bootstrap(self, samples: torch.Tensor, resamples: int, seed: int = 0) -> list[float]:
        """FIDs of ``resamples`` bootstrap resamples of ``samples``' features against the fixed
        reference statistics (the cached ones :meth:`compute` uses).

        Resample b draws N of the N sample indices with replacement from a generator seeded by
        ``seed``; the draws depend only on (seed, N), so every point of a sweep, whose sample i
        shares its noise across methods and budgets, is resampled alike (a paired bootstrap).
        A resampled FID is biased upwards (repeated samples); compare it with other resamples,
        or correct by the mean shift, never with :meth:`compute`'s FID directly.
        """
        from torch_fidelity import metric_fid, utils

        if resamples < 1:
            return []
        reference, cache_name, _ = self._reference_dataset()
        check_cache(self.cache_dir, cache_name)
        inputs = self._fidelity_inputs(samples, reference, cache_name)
        layer = utils.resolve_feature_layer_for_metric("fid", **inputs)
        extractor = utils.create_feature_extractor(inputs["feature_extractor"], [layer], **inputs)
        features = utils.get_featuresdict_from_dataset(
            inputs["input1"], extractor, inputs["batch_size"], inputs["cuda"], True, False
        )[layer]
        reference_stats = metric_fid.fid_input_id_to_statistics_cached(2, extractor, layer, **inputs)
        draws = np.random.default_rng(seed)
        fids = []
        for _ in range(resamples):
            index = torch.from_numpy(draws.integers(0, len(features), len(features)))
            stats = metric_fid.fid_features_to_statistics(features[index])
            fids.append(metric_fid.fid_statistics_to_metric(stats, reference_stats, False)[metric_fid.KEY_METRIC_FID])
        return fids
