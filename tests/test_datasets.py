"""The benchmark-zoo dataset configs load tiny fake copies from disk, offline, and fail fast.

Each test writes a handful of small images (plus CelebA's partition file / COCO's captions
JSON) under tmp_path, composes the train config with ``dataset=<name> dataset.root=...`` and
instantiates ``cfg.dataset`` as a run would.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from helpers import compose_config
from hydra.errors import InstantiationException
from PIL import Image
from torch.utils.data import DataLoader

from morse_exp.data import DatasetNotFoundError, ImageTransform

NEW_DATASETS = ["celeba64", "imagenet64", "celebahq256", "lsun_church256", "coco"]
HAS_LMDB = importlib.util.find_spec("lmdb") is not None


def load(name: str, root: Path, tmp_path: Path, *overrides: str):
    cfg = compose_config(
        "train", [f"dataset={name}", f"dataset.root={root}", "dataset.num_workers=0", *overrides],
        tmp_path / "run",
    )
    return hydra.utils.instantiate(cfg.dataset)


def assert_images(images: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(images.shape) == shape and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1


def not_found_message(datamodule) -> str:
    with pytest.raises(DatasetNotFoundError) as error:
        datamodule.check_available()
    message = str(error.value)
    assert "\n" not in message and "dataset.root" in message, message
    return message


def rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- CelebA


def make_celeba(root: Path, partitions: list[int]) -> Path:
    """178x218 images, black except DDIM's 128x128 face box (rows 57-184, cols 25-152): white,
    with its top-left 64x64 quarter red; plus list_eval_partition.txt. PNG-encoded under
    CelebA's .jpg names, so that the crop can be checked to the pixel."""
    (root / "img_align_celeba").mkdir(parents=True)
    image = np.zeros((218, 178, 3), np.uint8)
    image[57:185, 25:153] = 255
    image[57:121, 25:89] = (255, 0, 0)
    lines = []
    for k, partition in enumerate(partitions, start=1):
        Image.fromarray(image).save(root / "img_align_celeba" / f"{k:06d}.jpg", format="PNG")
        lines.append(f"{k:06d}.jpg {partition}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba64_crops_ddims_face_box_and_splits_by_partition(tmp_path):
    root = make_celeba(tmp_path / "celeba", [0, 0, 2, 0, 1, 2])
    data = load("celeba64", root, tmp_path)
    assert data.name == "celeba64" and data.image_shape == (3, 64, 64) and not data.has_labels
    assert [f.name for f in data.split("train").files] == ["000001.jpg", "000002.jpg", "000004.jpg"]
    assert [f.name for f in data.split("heldout").files] == ["000003.jpg", "000006.jpg"]  # "test"
    assert data.split("train")[0][1] == -1
    images = data.images("heldout")
    assert_images(images, (2, 3, 64, 64))
    # Exactly the box is kept (red or white: red channel 1 everywhere, no black from outside
    # it, not even on the edges), and its red quarter is the output's top-left quarter.
    assert (images[:, 0] == 1).all()
    assert (images[:, 1:, :31, :31] == -1).all() and (images[:, :, 33:, :] == 1).all()
    valid = load("celeba64", root, tmp_path, "dataset.heldout_partition=valid")
    assert [f.name for f in valid.split("heldout").files] == ["000005.jpg"]


def test_celeba64_accepts_torchvision_layout_and_names_missing_images(tmp_path):
    root = tmp_path / "download"
    make_celeba(root / "celeba", [0, 0, 2])
    assert len(load("celeba64", root, tmp_path).split("train")) == 2
    (root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    message = not_found_message(load("celeba64", root, tmp_path))
    assert "1 of the 2 images" in message and "000002.jpg" in message


def test_celeba64_rejects_bad_arguments(tmp_path):
    root = make_celeba(tmp_path / "celeba", [0, 2])

    def build_error(*overrides: str) -> str:
        with pytest.raises(InstantiationException) as error:  # the CLI prints its cause, one line
            load("celeba64", root, tmp_path, *overrides)
        assert isinstance(error.value.__cause__, ValueError)
        return str(error.value.__cause__)

    assert build_error("dataset.heldout_partition=train") == (
        "heldout_partition='train' is invalid: use 'valid' or 'test'")
    assert build_error("dataset.crop_box=[57,25,128]").startswith(
        "crop_box=[57, 25, 128] is invalid: use [top, left, height, width]")
    too_low = load("celeba64", root, tmp_path, "dataset.crop_box=[100,25,128,128]")
    with pytest.raises(ValueError, match=r"does not fit a 178x218 \(width x height\) image"):
        too_low.split("train")[0]


def test_image_transform_rejects_unknown_options():
    with pytest.raises(ValueError, match="interpolation='area' is invalid: use one of nearest, bilinear"):
        ImageTransform(64, interpolation="area")
    with pytest.raises(ValueError, match="aspect='pad' is invalid: use one of crop, stretch"):
        ImageTransform(64, aspect="pad")
    with pytest.raises(ValueError, match="channels=2 is invalid"):
        ImageTransform(64, channels=2)


# -------------------------------------------------------------------------------------- ImageNet


def test_imagenet64_box_resizes_whole_images_with_class_folder_labels(tmp_path):
    root = tmp_path / "imagenet"
    files = {
        "train/n01/a.JPEG": rgb(80, 100, 0), "train/n01/b.JPEG": rgb(90, 70, 1),
        "train/n02/deeper/c.png": rgb(64, 64, 2), "train/n02/d.png": rgb(80, 100, 3),
        "val/n02/e.png": rgb(80, 100, 4), "val/f.JPEG": rgb(50, 60, 5),
    }
    for name, array in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / name, format="PNG" if name.endswith("png") else "JPEG")
    data = load("imagenet64", root, tmp_path)
    assert data.name == "imagenet64" and data.image_shape == (3, 64, 64) and data.has_labels
    train, heldout = data.split("train"), data.split("heldout")
    assert [f.name for f in train.files] == ["a.JPEG", "b.JPEG", "d.png", "c.png"]  # sorted by path
    assert [f.name for f in heldout.files] == ["f.JPEG", "e.png"]
    assert train.targets == [0, 0, 1, 1] and heldout.targets == [-1, 1]  # flat val/f.JPEG: -1
    assert_images(data.images("train"), (4, 3, 64, 64))
    # The whole 100x80 image box-resized (area averaging) to 64x64: the downsampled-ImageNet recipe.
    expected = np.array(Image.fromarray(files["train/n02/d.png"]).resize((64, 64), Image.BOX))
    image, label = train[2]
    assert label == 1
    assert torch.allclose(image, torch.from_numpy(expected).permute(2, 0, 1).float() / 127.5 - 1, atol=1e-5)


# ------------------------------------------------------------------------------------- CelebA-HQ


def test_celebahq256_is_an_image_folder_with_a_heldout_fraction(tmp_path):
    root = tmp_path / "celebahq"
    root.mkdir()
    for k in range(10):
        Image.fromarray(rgb(300, 280, k)).save(root / f"{k:05d}.jpg")
    data = load("celebahq256", root, tmp_path)
    assert data.name == "celebahq256" and not data.has_labels
    assert len(data.split("train")) == 9 and len(data.split("heldout")) == 1
    assert not set(data.split("train").files) & set(data.split("heldout").files)
    assert_images(data.images("heldout"), (1, 3, 256, 256))


def test_files_that_are_not_images_are_left_out_with_one_warning(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    for k in range(4):
        Image.fromarray(rgb(40, 40, k)).save(root / f"{k}.png")
    (root / "notes.png").write_text("not an image")
    with pytest.warns(UserWarning, match=r"1 of 5 files are not readable images .*notes.png"):
        count = len((data := load("celebahq256", root, tmp_path)).split("train")) + len(data.split("heldout"))
    assert count == 4


# ------------------------------------------------------------------------------------------ LSUN


@pytest.mark.skipif(HAS_LMDB, reason="lmdb is installed")
def test_lsun_church256_says_lmdb_is_missing(tmp_path):
    data = load("lsun_church256", tmp_path / "lsun", tmp_path)
    assert data.name == "lsun_church256" and data.image_shape == (3, 256, 256) and not data.has_labels
    message = not_found_message(data)
    assert "needs the lmdb package" in message and "pip install lmdb" in message


@pytest.mark.skipif(not HAS_LMDB, reason="lmdb is not installed")
def test_lsun_church256_reads_lmdb_databases(tmp_path, monkeypatch):
    import io

    import lmdb

    monkeypatch.chdir(tmp_path)  # torchvision's LSUN caches its keys in the working directory
    root = tmp_path / "lsun"
    root.mkdir()
    for split, count in (("train", 3), ("val", 2)):
        with lmdb.open(str(root / f"church_outdoor_{split}_lmdb"), map_size=1 << 24) as env, env.begin(write=True) as txn:
            for k in range(count):
                buffer = io.BytesIO()
                Image.fromarray(rgb(256, 340, k)).save(buffer, format="WEBP")
                txn.put(f"{split}{k}".encode(), buffer.getvalue())
    data = load("lsun_church256", root, tmp_path)
    assert len(data.split("train")) == 3 and len(data.split("heldout")) == 2
    assert_images(data.images("heldout"), (2, 3, 256, 256))
    assert "church_outdoor_train_lmdb" in not_found_message(load("lsun_church256", tmp_path / "none", tmp_path))


# ------------------------------------------------------------------------------------------ COCO

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0)}


def make_coco(root: Path) -> Path:
    """Five captioned images on disk (one plain colour each), one captioned image missing from
    disk and one image without captions; first captions are not in annotation-id order."""
    (root / "val2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for image_id, colour in zip([42, 7, 99, 13, 5], COLOURS, strict=True):
        name = f"COCO_val2014_{image_id:012d}.jpg"
        Image.fromarray(np.full((60, 80, 3), COLOURS[colour], np.uint8)).save(root / "val2014" / name)
        images.append({"id": image_id, "file_name": name, "width": 80, "height": 60})
    Image.fromarray(rgb(60, 80, 0)).save(root / "val2014" / "COCO_val2014_000000000001.jpg")
    images += [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg"},
               {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"}]
    for number, (image_id, colour) in enumerate(zip([42, 7, 99, 13, 5, 3], [*COLOURS, "grey"], strict=True)):
        annotations.append({"id": 900 - number, "image_id": image_id, "caption": f" a {colour} square\n"})
        annotations.append({"id": number, "image_id": image_id, "caption": f"another {colour} thing"})
    (root / "annotations" / "captions_val2014.json").write_text(
        json.dumps({"images": images, "annotations": annotations}))
    return root


def test_coco_pairs_each_image_with_its_first_caption(tmp_path):
    data = load("coco", make_coco(tmp_path / "coco"), tmp_path)
    assert data.name == "coco" and data.image_shape == (3, 512, 512) and not data.has_labels
    train, heldout = data.captions("train"), data.captions("heldout")
    assert len(train) == 3 and len(heldout) == 2  # 5 captioned images on disk, held-out share 0.5
    assert sorted(train + heldout) == sorted(f"a {colour} square" for colour in COLOURS)
    for split in ("train", "heldout"):
        dataset = data.split(split)
        ids = [int(f.stem.rsplit("_", 1)[1]) for f in dataset.files]
        assert ids == sorted(ids)
        for k, caption in enumerate(data.captions(split)):
            image, item_caption = dataset[k]
            assert item_caption == caption
            colour = torch.tensor(COLOURS[caption.split()[1]], dtype=torch.float32) / 127.5 - 1
            assert torch.allclose(image.mean(dim=(1, 2)), colour, atol=0.05)
    images, captions = next(iter(DataLoader(data.split("heldout"), batch_size=2)))
    assert_images(images, (2, 3, 512, 512))
    assert list(captions) == heldout  # default collate: a tuple of str
    again = load("coco", tmp_path / "coco", tmp_path)
    assert again.captions("heldout") == heldout  # a fixed split


# --------------------------------------------------------------------------------- every dataset


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_missing_root_fails_with_one_line_naming_the_override(name, tmp_path):
    data = load(name, tmp_path / "nowhere", tmp_path)
    not_found_message(data)


@pytest.mark.parametrize("name", NEW_DATASETS)
def test_default_root_is_under_the_data_dir(name, tmp_path):
    cfg = compose_config("train", [f"dataset={name}"], tmp_path / "run")
    assert "_target_" in cfg.dataset
    assert Path(cfg.dataset.root) == Path(cfg.paths.data_dir) / name
