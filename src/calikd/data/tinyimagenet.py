"""Tiny ImageNet (``tiny-imagenet-200.zip`` from cs231n.stanford.edu): 64x64 RGB, 200 classes.

Official layout: ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box...``), and an unlabelled ``test/``. The labelled official
*val* split is our **test** split; our val is held out of train as for every dataset. Classes are the wnids
of ``wnids.txt`` in sorted order (class names are the wnids). Grayscale JPEGs are converted to RGB. Images
are decoded once and cached (see :mod:`calikd.data.decode`).

Archive SHA-256 ``6198c8ae…c821`` as published by several independent projects (the course page gives
no checksum).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from calikd.data.decode import check_image_size, decode_cached, is_image_file, list_images
from calikd.data.fetch import dataset_root
from calikd.data.image_folder import check_same_size, with_classes
from calikd.data.info import DatasetInfo, default_crop_padding
from calikd.data.registry import BuildContext, RawDataset, Resource, register_dataset
from calikd.errors import DataError

TINYIMAGENET_INFO = DatasetInfo(
    name="tinyimagenet",
    num_classes=200,
    in_channels=3,
    image_size=(64, 64),
    mean=(0.4802, 0.4481, 0.3975),
    std=(0.2770, 0.2691, 0.2821),
    hflip=True,
    crop_padding=8,
    classes=(),  # the wnids, read from wnids.txt at load time
)
TINY_DIR = "tiny-imagenet-200"


def find_tinyimagenet(folder: Path) -> Path | None:
    """``folder`` or ``folder/tiny-imagenet-200`` when it has the official layout."""
    for d in (folder / TINY_DIR, folder):
        if (
            (d / "wnids.txt").is_file()
            and (d / "train").is_dir()
            and (d / "val" / "val_annotations.txt").is_file()
        ):
            return d
    return None


def read_wnids(root: Path) -> list[str]:
    """Sorted, de-duplicated wnids of ``wnids.txt``."""
    wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()})
    if not wnids:
        raise DataError(f"{root / 'wnids.txt'} lists no classes")
    return wnids


def read_val_annotations(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """(files, labels) of the official val split, sorted by file name."""
    index = {w: i for i, w in enumerate(wnids)}
    ann = root / "val" / "val_annotations.txt"
    rows: list[tuple[str, int]] = []
    for lineno, line in enumerate(ann.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"{ann}:{lineno}: expected 'file<TAB>wnid', got {line!r}")
        fname, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            raise DataError(f"{ann}:{lineno}: wnid {wnid!r} is not in wnids.txt")
        if "/" in fname or "\\" in fname or not is_image_file(Path(fname)):
            raise DataError(f"{ann}:{lineno}: unexpected file name {fname!r}")
        rows.append((fname, index[wnid]))
    rows.sort()
    files = [root / "val" / "images" / f for f, _ in rows]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{len(missing)} file(s) listed in {ann} are missing, e.g. {missing[0]}")
    return files, [label for _, label in rows]


@register_dataset(
    "tinyimagenet",
    info=TINYIMAGENET_INFO,
    aliases=("tiny-imagenet", "tiny_imagenet", "tiny-imagenet-200"),
    urls=("http://cs231n.stanford.edu/",),
    resources=(
        Resource(
            "tiny-imagenet-200.zip",
            sha256="6198c8ae015e2b3e007c7841da39ec069199b9aa3bfa943a462022fe5e43c821",
            extract=True,
            size=248100043,
        ),
    ),
    find=find_tinyimagenet,
    description="Tiny ImageNet 200 (official val = our test)",
)
def build_tinyimagenet(
    ctx: BuildContext, *, image_size: int | tuple[int, int] | None = None, cache_dir: str | None = None
) -> RawDataset:
    """``image_size`` resizes (the official images are all 64x64)."""
    root = dataset_root(ctx)
    size = check_image_size(image_size)
    wnids = read_wnids(root)
    train_files: list[Path] = []
    train_labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"Tiny ImageNet class folder '{folder}' is missing")
        images = list_images(folder)
        train_files += images
        train_labels += [label] * len(images)
    test_files, test_labels = read_val_annotations(root, wnids)
    kwargs = {"channels": 3, "image_size": size, "cache_dir": cache_dir}
    train = decode_cached("tinyimagenet", "train", root, train_files, train_labels, **kwargs)
    test = decode_cached("tinyimagenet", "test", root, test_files, test_labels, **kwargs)
    check_same_size(train, test, "test")
    info = with_classes(TINYIMAGENET_INFO, wnids)
    if tuple(train.images.shape[2:]) != info.image_size:
        h, w = train.images.shape[2:]
        info = replace(info, image_size=(h, w), crop_padding=default_crop_padding((h, w)))
    return RawDataset(info=info, train=train, test=test)
