"""CIFAR-10 and CIFAR-100 from the official *binary* archives (nothing is unpickled).

* ``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``: ``data_batch_1..5.bin``, ``test_batch.bin``
  (records of 1 label byte + 3072 pixel bytes, channel-planar RGB 32x32) and ``batches.meta.txt``.
* ``cifar-100-binary.tar.gz`` -> ``cifar-100-binary/``: ``train.bin``, ``test.bin`` (records of a coarse
  and a fine label byte + 3072 pixel bytes), ``coarse_label_names.txt``, ``fine_label_names.txt``.

Archive SHA-256s: CIFAR-10 ``c4a38c50…a1dd``, CIFAR-100 ``58a81ae1…d8ec``, as published by several
independent projects for https://www.cs.toronto.edu/~kriz/ (the page itself lists MD5s only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from calikd.data.dataset import ArrayDataset
from calikd.data.fetch import dataset_root
from calikd.data.info import DatasetInfo
from calikd.data.registry import BuildContext, RawDataset, Resource, register_dataset
from calikd.errors import DataError

PIXELS = 3 * 32 * 32
CIFAR_URLS = ("https://www.cs.toronto.edu/~kriz/",)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)  # fmt: skip
CIFAR100_FINE = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)  # fmt: skip

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    num_classes=10,
    in_channels=3,
    image_size=(32, 32),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    hflip=True,
    crop_padding=4,
    classes=CIFAR10_CLASSES,
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    num_classes=100,
    in_channels=3,
    image_size=(32, 32),
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    hflip=True,
    crop_padding=4,
    classes=CIFAR100_FINE,
)
CIFAR100_COARSE_INFO = DatasetInfo(
    name="cifar100-coarse",
    num_classes=20,
    in_channels=3,
    image_size=(32, 32),
    mean=CIFAR100_INFO.mean,
    std=CIFAR100_INFO.std,
    hflip=True,
    crop_padding=4,
    classes=CIFAR100_COARSE,
)

CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR100_DIR = "cifar-100-binary"


def read_cifar_binary(
    path: str | os.PathLike[str], *, label_bytes: int = 1, expected_count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary batch: (images uint8 (N, 3, 32, 32), labels uint8 (N, label_bytes)).

    Each record is ``label_bytes`` label bytes (CIFAR-100: coarse, fine) then 3072 channel-planar pixels.
    A size that is not a whole number of records is a :class:`DataError`.
    """
    path = Path(path)
    if label_bytes not in (1, 2):
        raise DataError(f"label_bytes must be 1 (CIFAR-10) or 2 (CIFAR-100), got {label_bytes}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    record = label_bytes + PIXELS
    count, rest = divmod(len(raw), record)
    if not raw:
        raise DataError(
            f"file {path} is empty: a CIFAR batch holds {record}-byte records",
            hint="delete it and fetch the dataset again (`calikd data fetch NAME`)",
        )
    if rest:
        raise DataError(
            f"file {path} is truncated: {len(raw)} bytes is not a whole number of {record}-byte records "
            f"({count} complete records and {rest} bytes)"
        )
    if expected_count is not None and count != expected_count:
        raise DataError(f"file {path} holds {count} records; the official file holds {expected_count}")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(count, record)
    labels = data[:, :label_bytes].copy()
    images = data[:, label_bytes:].reshape(count, 3, 32, 32).copy()
    return images, labels


def _read_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]


def _check_names(path: Path, expected: tuple[str, ...]) -> None:
    names = _read_names(path)
    if names is not None and tuple(names) != expected:
        raise DataError(
            f"{path} lists class names {names[:5]}...; expected the official {list(expected[:5])}..."
        )


def _find_in(folder: Path, inner: str, required: tuple[str, ...]) -> Path | None:
    for d in (folder / inner, folder):
        if all((d / name).is_file() for name in required):
            return d
    return None


def find_cifar10(folder: Path) -> Path | None:
    """``folder`` or ``folder/cifar-10-batches-bin`` when it holds the six batch files."""
    return _find_in(folder, CIFAR10_DIR, (*CIFAR10_TRAIN, CIFAR10_TEST))


def find_cifar100(folder: Path) -> Path | None:
    """``folder`` or ``folder/cifar-100-binary`` when it holds ``train.bin`` and ``test.bin``."""
    return _find_in(folder, CIFAR100_DIR, ("train.bin", "test.bin"))


def _to_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int, path: Path) -> ArrayDataset:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"file {path} has label {int(labels.max())}; expected labels below {num_classes}")
    return ArrayDataset(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


@register_dataset(
    "cifar10",
    info=CIFAR10_INFO,
    aliases=("cifar-10", "cifar_10"),
    urls=CIFAR_URLS,
    resources=(
        Resource(
            "cifar-10-binary.tar.gz",
            sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            extract=True,
            size=170052171,
        ),
    ),
    find=find_cifar10,
    description="CIFAR-10, official binary archive",
)
def build_cifar10(ctx: BuildContext, *, strict_counts: bool = True) -> RawDataset:
    """``strict_counts`` checks the official 10000 records per batch file."""
    root = dataset_root(ctx)
    count = 10000 if strict_counts else None
    _check_names(root / "batches.meta.txt", CIFAR10_CLASSES)
    parts = []
    for name in CIFAR10_TRAIN:
        images, labels = read_cifar_binary(root / name, label_bytes=1, expected_count=count)
        parts.append(_to_dataset(images, labels[:, 0], 10, root / name))
    images, labels = read_cifar_binary(root / CIFAR10_TEST, label_bytes=1, expected_count=count)
    test = _to_dataset(images, labels[:, 0], 10, root / CIFAR10_TEST)
    return RawDataset(info=CIFAR10_INFO, train=ArrayDataset.concat(parts), test=test)


def _build_cifar100(ctx: BuildContext, coarse: bool, strict_counts: bool) -> RawDataset:
    root = dataset_root(ctx)
    _check_names(root / "fine_label_names.txt", CIFAR100_FINE)
    _check_names(root / "coarse_label_names.txt", CIFAR100_COARSE)
    column, info = (0, CIFAR100_COARSE_INFO) if coarse else (1, CIFAR100_INFO)
    splits = {}
    for split, count in (("train", 50000), ("test", 10000)):
        path = root / f"{split}.bin"
        images, labels = read_cifar_binary(
            path, label_bytes=2, expected_count=count if strict_counts else None
        )
        if labels.size and (int(labels[:, 0].max()) >= 20 or int(labels[:, 1].max()) >= 100):
            raise DataError(f"file {path} has labels out of range (coarse < 20, fine < 100 expected)")
        splits[split] = _to_dataset(images, labels[:, column], info.num_classes, path)
    return RawDataset(info=info, train=splits["train"], test=splits["test"])


_CIFAR100_SPEC = {
    "info": CIFAR100_INFO,
    "folder": "cifar100",
    "urls": CIFAR_URLS,
    "resources": (
        Resource(
            "cifar-100-binary.tar.gz",
            sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
            extract=True,
        ),
    ),
    "find": find_cifar100,
}


@register_dataset(
    "cifar100",
    aliases=("cifar-100", "cifar_100", "cifar100-fine"),
    **_CIFAR100_SPEC,
    description="CIFAR-100 (100 fine labels), official binary archive",
)
def build_cifar100(ctx: BuildContext, *, strict_counts: bool = True) -> RawDataset:
    """CIFAR-100 with its 100 fine labels."""
    return _build_cifar100(ctx, coarse=False, strict_counts=strict_counts)


@register_dataset(
    "cifar100-coarse",
    aliases=("cifar100_coarse", "cifar-100-coarse"),
    **{**_CIFAR100_SPEC, "info": CIFAR100_COARSE_INFO},
    description="CIFAR-100 with its 20 coarse (superclass) labels",
)
def build_cifar100_coarse(ctx: BuildContext, *, strict_counts: bool = True) -> RawDataset:
    """CIFAR-100 with its 20 coarse labels."""
    return _build_cifar100(ctx, coarse=True, strict_counts=strict_counts)
