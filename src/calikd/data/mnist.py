"""MNIST and Fashion-MNIST (IDX files), plus :func:`register_idx_dataset` for other IDX datasets.

Sources and hashes (see the module constants):

* Fashion-MNIST: ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/`` (the Zalando Research
  README's link). Files are verified by the SHA-256 of their *decompressed* content (measured on the
  Debian ``dataset-fashion-mnist`` files, which are recompressed copies), so upstream and Debian files both
  verify, on download and on every load (a process keeps the last files it parsed, keyed by the SHA-256 of
  the bytes on disk, so the runs of a sweep worker decompress and parse them once).
* MNIST: torchvision's S3 mirror, TensorFlow's GCS mirror and ``yann.lecun.com``; downloads are verified
  by the SHA-256 of the official ``.gz`` files (published identically by several projects). No SHA-256 of
  the decompressed MNIST files is published that we could confirm, so local MNIST files are checked by
  structure and counts, and refused if they are in fact Fashion-MNIST's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from calikd.data.dataset import ArrayDataset
from calikd.data.fetch import dataset_root
from calikd.data.idx import gunzip_maybe, parse_idx, read_file_bytes, sha256_hex
from calikd.data.info import DatasetInfo
from calikd.data.registry import BuildContext, DatasetSpec, RawDataset, Resource, add_spec
from calikd.errors import ChecksumError, DataError


@dataclass(frozen=True)
class IdxFile:
    """One official IDX file: ``stem`` is its name without ``.gz``."""

    stem: str
    split: str  # "train" | "test"
    kind: str  # "images" | "labels"
    count: int | None
    content_sha256: str | None = None  # of the decompressed content
    gz_sha256: str | None = None  # of the official .gz


def _mnist_files(
    counts: tuple[int, int], content: dict[str, str | None], gz: dict[str, str | None]
) -> tuple[IdxFile, ...]:
    out = []
    for split, prefix, count in (("train", "train", counts[0]), ("test", "t10k", counts[1])):
        for kind, stem in (
            ("images", f"{prefix}-images-idx3-ubyte"),
            ("labels", f"{prefix}-labels-idx1-ubyte"),
        ):
            out.append(IdxFile(stem, split, kind, count, content.get(stem), gz.get(stem)))
    return tuple(out)


FASHION_MNIST_FILES = _mnist_files(
    (60000, 10000),
    content={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    gz={
        "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
)
MNIST_FILES = _mnist_files(
    (60000, 10000),
    content={},
    gz={
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
)

FASHION_MNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion-mnist",
    num_classes=10,
    in_channels=1,
    image_size=(28, 28),
    mean=(0.2860,),
    std=(0.3530,),
    hflip=True,
    crop_padding=4,
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)
MNIST_INFO = DatasetInfo(
    name="mnist",
    num_classes=10,
    in_channels=1,
    image_size=(28, 28),
    mean=(0.1307,),
    std=(0.3081,),
    hflip=False,
    crop_padding=4,
    classes=tuple(str(d) for d in range(10)),
)

# Content hashes of every known official IDX file -> dataset, to refuse one dataset's files for another.
_KNOWN_CONTENT: dict[str, str] = {}


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _finder(files: tuple[IdxFile, ...], extra_subdirs: tuple[str, ...]):
    def find(folder: Path) -> Path | None:
        for d in (folder, *(folder / s for s in extra_subdirs)):
            if all(_idx_path(d, f.stem) is not None for f in files):
                return d
        return None

    return find


_PARSED: OrderedDict[tuple[str, str, IdxFile, str], np.ndarray] = OrderedDict()
_PARSED_KEEP = 4  # one dataset's four files: a sweep worker's runs load the same dataset again and again


def _read_verified(path: Path, f: IdxFile, dataset: str) -> np.ndarray:
    """The parsed, verified array of ``path`` (read-only: callers copy), parsed once per process for the
    same bytes on disk (keyed by their SHA-256)."""
    raw = read_file_bytes(path)
    key = (str(path), sha256_hex(raw), f, dataset)
    if key in _PARSED:
        _PARSED.move_to_end(key)
        return _PARSED[key]
    array = _parse_verified(path, raw, f, dataset)
    _PARSED[key] = array
    while len(_PARSED) > _PARSED_KEEP:
        _PARSED.popitem(last=False)
    return array


def _parse_verified(path: Path, raw: bytes, f: IdxFile, dataset: str) -> np.ndarray:
    content = gunzip_maybe(raw, path)
    digest = sha256_hex(content)
    if f.content_sha256 is not None and digest != f.content_sha256:
        raise ChecksumError(
            f"file {path} does not hold the official {dataset} {f.stem}: SHA-256 of its content is {digest}, "
            f"expected {f.content_sha256}",
            hint=f"the file is corrupt or not {dataset}'s; delete it and fetch it again "
            f"(`calikd data fetch {dataset}`)",
        )
    other = _KNOWN_CONTENT.get(digest)
    if other is not None and other != dataset:
        raise DataError(f"file {path} is {other}'s {f.stem}, not {dataset}'s", hint="check --data-dir")
    ndim = 3 if f.kind == "images" else 1
    array = parse_idx(content, source=str(path), expected_ndim=ndim, expected_count=f.count)
    array.flags.writeable = False  # shared by later loads: callers copy
    return array


def _build_idx(ctx: BuildContext, files: tuple[IdxFile, ...], info: DatasetInfo) -> RawDataset:
    root = dataset_root(ctx)
    splits: dict[str, ArrayDataset] = {}
    for split in ("train", "test"):
        img_f = next(f for f in files if f.split == split and f.kind == "images")
        lab_f = next(f for f in files if f.split == split and f.kind == "labels")
        img_path, lab_path = _idx_path(root, img_f.stem), _idx_path(root, lab_f.stem)
        if img_path is None or lab_path is None:  # pragma: no cover - find() checked them
            raise DataError(f"{ctx.spec.name}: missing IDX files in '{root}'")
        images = _read_verified(img_path, img_f, ctx.spec.name)
        labels = _read_verified(lab_path, lab_f, ctx.spec.name)
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{img_path} holds {images.shape[0]} images but {lab_path} holds {labels.shape[0]} labels"
            )
        if tuple(images.shape[1:]) != info.image_size:
            raise DataError(
                f"{img_path} holds {images.shape[1]}x{images.shape[2]} images; expected {info.image_size}"
            )
        if labels.size and int(labels.max()) >= info.num_classes:
            raise DataError(
                f"{lab_path} has label {int(labels.max())}; {ctx.spec.name} has {info.num_classes} classes"
            )
        splits[split] = ArrayDataset(
            torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        )
    return RawDataset(info=info, train=splits["train"], test=splits["test"])


def register_idx_dataset(
    info: DatasetInfo,
    files: tuple[IdxFile, ...],
    *,
    aliases: tuple[str, ...] = (),
    urls: tuple[str, ...] = (),
    system_dirs: tuple[Path, ...] = (),
    install_hints: tuple[str, ...] = (),
    extra_subdirs: tuple[str, ...] = (),
    replace: bool = False,
) -> DatasetSpec:
    """Register an MNIST-like IDX dataset named ``info.name`` with the four ``files`` (tests use this too)."""

    def build(ctx: BuildContext) -> RawDataset:
        return _build_idx(ctx, files, info)

    resources = tuple(
        Resource(f"{f.stem}.gz", sha256=f.gz_sha256, content_sha256=f.content_sha256) for f in files
    )
    for f in files:
        if f.content_sha256 is not None:
            _KNOWN_CONTENT[f.content_sha256] = info.name
    return add_spec(
        DatasetSpec(
            name=info.name,
            builder=build,
            info=info,
            aliases=aliases,
            urls=urls,
            resources=resources,
            find=_finder(files, extra_subdirs),
            system_dirs=system_dirs,
            install_hints=install_hints,
            description=f"{info.name} (IDX files)",
        ),
        replace=replace,
    )


register_idx_dataset(
    FASHION_MNIST_INFO,
    FASHION_MNIST_FILES,
    aliases=("fashion_mnist", "fmnist", "fashionmnist"),
    urls=FASHION_MNIST_URLS,
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    install_hints=("`apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu package)",),
    extra_subdirs=("raw", "FashionMNIST/raw"),
)
register_idx_dataset(
    MNIST_INFO,
    MNIST_FILES,
    urls=MNIST_URLS,
    extra_subdirs=("raw", "MNIST/raw"),
)
