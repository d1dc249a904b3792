"""CINIC-10 (``CINIC-10.tar.gz`` from the Edinburgh DataShare): 32x32 RGB PNGs, the ten CIFAR-10 classes.

Layout: ``{train,valid,test}/<class>/*.png`` (90,000 images per split). Our val is held out of ``train``
like for every dataset; CINIC's own ``valid`` folder is handled by the option ``valid``: ``"ignore"``
(default: train on the official 90k train split), ``"merge"`` (train on train + valid, 180k, as the
CINIC-10 authors suggest for CIFAR-like comparisons; val is then held out of the union) or ``"use"`` (valid
becomes our val split; ``val_fraction`` is ignored). Images are decoded once and cached.

Archive SHA-256 ``31b095ac…1a9e`` comes from a single public project that checks it on download (the
DataShare page gives only an MD5); a mismatch can be overridden with ``--sha256``.
"""

from __future__ import annotations

from pathlib import Path

from calikd.data.dataset import ArrayDataset
from calikd.data.fetch import dataset_root
from calikd.data.image_folder import check_valid_choice, class_folders, decode_class_split
from calikd.data.info import DatasetInfo
from calikd.data.registry import BuildContext, RawDataset, Resource, register_dataset
from calikd.errors import DataError

CINIC10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CINIC10_INFO = DatasetInfo(
    name="cinic10",
    num_classes=10,
    in_channels=3,
    image_size=(32, 32),
    mean=(0.47889522, 0.47227842, 0.43047404),
    std=(0.24205776, 0.23828046, 0.25874835),
    hflip=True,
    crop_padding=4,
    classes=CINIC10_CLASSES,
)


def find_cinic10(folder: Path) -> Path | None:
    """``folder`` or ``folder/CINIC-10`` when it has ``train/`` and ``test/`` with class folders."""
    for d in (folder, folder / "CINIC-10"):
        if (d / "train" / "airplane").is_dir() and (d / "test" / "airplane").is_dir():
            return d
    return None


@register_dataset(
    "cinic10",
    info=CINIC10_INFO,
    aliases=("cinic-10", "cinic_10", "cinic"),
    urls=(
        "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/",
        "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3192/",
    ),
    resources=(
        Resource(
            "CINIC-10.tar.gz",
            sha256="31b095acf6d75e25a9e028bae82a07a0f94ff6b00671be2802d34ac4efa81a9e",
            extract=True,
        ),
    ),
    find=find_cinic10,
    description="CINIC-10 (CIFAR-10 classes, CIFAR + downsampled ImageNet)",
)
def build_cinic10(ctx: BuildContext, *, valid: str = "ignore", cache_dir: str | None = None) -> RawDataset:
    """``valid``: what to do with CINIC's own valid folder (``ignore`` | ``merge`` | ``use``)."""
    valid = check_valid_choice(valid)
    root = dataset_root(ctx)
    classes = list(CINIC10_CLASSES)
    for split in ("train", "test") + (("valid",) if valid != "ignore" else ()):
        found = class_folders(root / split) if (root / split).is_dir() else []
        if found != classes:
            raise DataError(
                f"'{root / split}' has class folders {found}; CINIC-10 has {classes}",
                hint="point data_dir at the folder holding train/, valid/ and test/",
            )
    kwargs = {"channels": 3, "image_size": (32, 32), "cache_dir": cache_dir}
    train = decode_class_split("cinic10", "train", root / "train", classes, **kwargs)
    test = decode_class_split("cinic10", "test", root / "test", classes, **kwargs)
    val = None
    if valid != "ignore":
        extra = decode_class_split("cinic10", "valid", root / "valid", classes, **kwargs)
        if valid == "merge":
            train = ArrayDataset.concat([train, extra])
        else:
            val = extra
    return RawDataset(info=CINIC10_INFO, train=train, test=test, val=val)
