"""Image folders: the decode cache follows the files' content, names that are not UTF-8 work, degenerate
trees are refused, and Pillow's decompression-bomb warning does not show above calikd's own refusal."""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import EVAL, FAST, MODEL, RunCli
from PIL import Image

from calikd.data import load_dataset
from calikd.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)


def _tree(root: Path, counts: dict[str, dict[str, int]], value: int | None = None, size: int = 8) -> None:
    """root/<split>/<class>/<i>.ppm: random colours, dark for class ``a`` and bright for the others, every
    fifth the other way round (a model learns it at once, and makes mistakes to calibrate), or all ``value``.
    The same pixels in every process (``hash`` of a string is salted per process: not used)."""
    for split, classes in counts.items():
        for cls, n in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng(zlib.crc32(f"{split}/{cls}/{i}".encode()))
                bright = (cls == "a") == (i % 5 == 4)
                pixels = rng.integers(0, 64, (size, size, 3), dtype=np.uint8) + (192 if bright else 0)
                if value is not None:
                    pixels[:] = value
                Image.fromarray(pixels).save(folder / f"{i}.ppm")


def test_the_decode_cache_sees_images_edited_in_place(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    counts = {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}}
    _tree(root, counts)
    before = load_dataset("imagefolder", root, val_fraction=0.0)
    assert before.train.images.float().mean() > 50  # random colours
    sizes = {p: p.stat().st_size for p in root.rglob("*.ppm")}
    _tree(root, counts, value=0)  # every image black, same format, same size, same names
    assert {p: p.stat().st_size for p in root.rglob("*.ppm")} == sizes
    after = load_dataset("imagefolder", root, val_fraction=0.0)
    assert after.train.images.max() == 0 and after.test.images.max() == 0


def test_names_that_are_not_utf8(run_cli: RunCli, tmp_path: Path) -> None:
    """Class folders and files named with bytes that are not UTF-8 load, train and calibrate (into a run
    folder whose name is not UTF-8 either) without a traceback."""
    root = tmp_path / "tree"
    _tree(root, {"train": {"a": 16, "b": 16}, "test": {"a": 4, "b": 4}})
    base = os.fsencode(root)
    for split in ("train", "test"):
        folder = base + b"/" + split.encode()
        os.rename(folder + b"/b", folder + b"/b\xff\xfe")  # latin-1 bytes, invalid as UTF-8
        os.rename(folder + b"/a/0.ppm", folder + b"/a/\xe9t\xe9.ppm")
    code, _, err = run_cli(["data", "info", "imagefolder", "--data-dir", str(root)])
    assert code == 0 and "Traceback" not in err, err
    out_dir = os.fsdecode(os.fsencode(tmp_path) + b"/run\xff")
    data = ["--dataset", "imagefolder", "--data-dir", str(root), "--val-fraction", "0.25"]
    argv = ["train-teacher", *data, *MODEL, *FAST, "--batch-size", "8", "--epochs", "3", "--out", out_dir]
    code, _, err = run_cli(argv)
    assert code == 0 and "Traceback" not in err, err
    code, _, err = run_cli(["calibrate", out_dir, *EVAL, "--no-plots", "--data-dir", str(root)])
    assert code == 0 and "Traceback" not in err, err
    assert Path(out_dir, "last.calibrator.json").is_file() and Path(out_dir, "last.calibration.md").is_file()


def test_a_tree_with_one_class_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"train": {"only": 4}, "test": {"only": 2}})
    with pytest.raises(DataError, match=r"has a single class folder \('only'\)"):
        load_dataset("imagefolder", root)


def test_an_empty_class_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}})
    (root / "train" / "c").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) '.*train/c' hold no images"):
        load_dataset("imagefolder", root)


def test_an_empty_class_folder_with_test_images_warns(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2, "c": 2}})
    (root / "train" / "c").mkdir()
    with pytest.warns(UserWarning, match=r"'.*train/c' hold no training images"):
        data = load_dataset("imagefolder", root, val_fraction=0.0)
    assert data.info.num_classes == 3 and data.test.labels.tolist().count(2) == 2


def test_no_decompression_bomb_warning_above_the_refusal(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    _tree(root, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}}, size=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 256 pixels: Pillow warns (it refuses above 400)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(["data", "info", "imagefolder", "--data-dir", str(root)])
    assert code == 2 and "more than Pillow's limit of 200" in err
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
