"""MNIST-format datasets: fetch from a local server, lookup order, and the real Debian Fashion-MNIST files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.data import dataset_info, fetch_dataset, load_dataset
from calikd.data.info import DatasetInfo
from calikd.data.mnist import FASHION_MNIST_FILES, IdxFile, register_idx_dataset
from calikd.data.registry import unregister_dataset
from calikd.errors import ChecksumError, DataError

TINY_INFO = DatasetInfo(
    name="tiny-idx",
    num_classes=10,
    in_channels=1,
    image_size=(28, 28),
    mean=(0.5,),
    std=(0.25,),
    hflip=False,
    crop_padding=4,
    classes=tuple(str(i) for i in range(10)),
)


@pytest.fixture
def tiny_idx(http_server, gen) -> Iterator[dict]:
    """A registered IDX dataset of 40 train / 20 test samples served gzip-compressed by the local server.

    Train files are verified by content hash (like Fashion-MNIST), test files by .gz hash (like MNIST).
    """
    arrays = {
        "train-images-idx3-ubyte": gen.idx_images(40, seed=1),
        "train-labels-idx1-ubyte": gen.idx_labels(40, seed=1),
        "t10k-images-idx3-ubyte": gen.idx_images(20, seed=2),
        "t10k-labels-idx1-ubyte": gen.idx_labels(20, seed=2),
    }
    files = []
    for stem, array in arrays.items():
        raw = gen.write_idx(array)
        packed = gen.gz(raw)
        http_server.put(f"tiny/{stem}.gz", packed)
        split = "train" if stem.startswith("train") else "test"
        kind = "images" if "images" in stem else "labels"
        content = gen.sha256_of(raw) if split == "train" else None
        gz_hash = None if split == "train" else gen.sha256_of(packed)
        files.append(IdxFile(stem, split, kind, array.shape[0], content, gz_hash))
    register_idx_dataset(TINY_INFO, tuple(files), aliases=("tinyidx",), urls=(http_server.url + "tiny/",))
    try:
        yield arrays
    finally:
        unregister_dataset("tiny-idx")


def test_fetch_and_load_idx_dataset(tmp_path: Path, tiny_idx) -> None:
    root = fetch_dataset("tinyidx", tmp_path)
    assert root == tmp_path / "tiny-idx"
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{s}.gz" for s in tiny_idx)
    ds = load_dataset("tiny-idx", tmp_path, val_fraction=0.25, split_seed=3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)
    assert ds.train.images.shape[1:] == (1, 28, 28)
    np.testing.assert_array_equal(ds.test.images[:, 0].numpy(), tiny_idx["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test.labels.numpy(), tiny_idx["t10k-labels-idx1-ubyte"])
    both = np.concatenate([ds.train.labels.numpy(), ds.val.labels.numpy()])
    assert sorted(both) == sorted(tiny_idx["train-labels-idx1-ubyte"])


def test_fetch_rejects_wrong_content_and_leaves_nothing(tmp_path: Path, http_server, tiny_idx, gen) -> None:
    http_server.put("tiny/train-images-idx3-ubyte.gz", gen.gz(gen.write_idx(gen.idx_images(40, seed=9))))
    with pytest.raises(ChecksumError, match="content SHA-256"):
        fetch_dataset("tiny-idx", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_rejects_wrong_gz(tmp_path: Path, http_server, tiny_idx, gen) -> None:
    http_server.put("tiny/t10k-labels-idx1-ubyte.gz", gen.gz(gen.write_idx(gen.idx_labels(20, seed=5))))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fetch_dataset("tiny-idx", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_local_files_verified_on_load(tmp_path: Path, tiny_idx, gen) -> None:
    folder = tmp_path / "tiny-idx"
    folder.mkdir()
    for stem, array in tiny_idx.items():
        (folder / stem).write_bytes(gen.write_idx(array))  # raw, not gzip
    assert len(load_dataset("tiny-idx", tmp_path, val_fraction=0.0).train) == 40
    labels = tiny_idx["train-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10
    (folder / "train-labels-idx1-ubyte").write_bytes(gen.write_idx(labels))
    with pytest.raises(ChecksumError, match="does not hold the official tiny-idx"):
        load_dataset("tiny-idx", tmp_path)
    (folder / "train-labels-idx1-ubyte").write_bytes(gen.write_idx(tiny_idx["train-labels-idx1-ubyte"]))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(gen.write_idx(gen.idx_labels(19)))
    with pytest.raises(DataError, match="holds 19 items; the official file holds 20"):
        load_dataset("tiny-idx", tmp_path)


def test_a_process_parses_the_same_bytes_once(tmp_path: Path, tiny_idx, gen, monkeypatch) -> None:
    from calikd.data import mnist

    parsed: list[str] = []
    real = mnist._parse_verified
    monkeypatch.setattr(mnist, "_parse_verified", lambda p, *a: parsed.append(p.name) or real(p, *a))
    folder = tmp_path / "tiny-idx"
    folder.mkdir()
    for stem, array in tiny_idx.items():
        (folder / stem).write_bytes(gen.write_idx(array))
    first = load_dataset("tiny-idx", tmp_path, val_fraction=0.0)
    second = load_dataset("tiny-idx", tmp_path, val_fraction=0.0)
    assert len(parsed) == 4  # the second load found all four files' bytes unchanged
    assert torch.equal(first.train.images, second.train.images)
    second.train.images[0] += 1  # each load owns its tensors: the kept arrays are not shared
    assert not torch.equal(first.train.images, second.train.images)
    labels = tiny_idx["train-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10
    (folder / "train-labels-idx1-ubyte").write_bytes(gen.write_idx(labels))  # same size, new bytes
    with pytest.raises(ChecksumError, match="does not hold the official tiny-idx"):
        load_dataset("tiny-idx", tmp_path)
    assert parsed[-1] == "train-labels-idx1-ubyte"


def test_image_label_count_mismatch(tmp_path: Path, gen) -> None:
    files = (
        IdxFile("train-images-idx3-ubyte", "train", "images", None),
        IdxFile("train-labels-idx1-ubyte", "train", "labels", None),
        IdxFile("t10k-images-idx3-ubyte", "test", "images", None),
        IdxFile("t10k-labels-idx1-ubyte", "test", "labels", None),
    )
    register_idx_dataset(TINY_INFO, files)
    try:
        folder = tmp_path / "tiny-idx"
        folder.mkdir()
        (folder / "train-images-idx3-ubyte").write_bytes(gen.write_idx(gen.idx_images(5)))
        (folder / "train-labels-idx1-ubyte").write_bytes(gen.write_idx(gen.idx_labels(6)))
        (folder / "t10k-images-idx3-ubyte").write_bytes(gen.write_idx(gen.idx_images(2)))
        (folder / "t10k-labels-idx1-ubyte").write_bytes(gen.write_idx(gen.idx_labels(2)))
        with pytest.raises(DataError, match=r"holds 5 images but .* holds 6 labels"):
            load_dataset("tiny-idx", tmp_path)
    finally:
        unregister_dataset("tiny-idx")


def test_lookup_order_and_not_found_message(tmp_path: Path, tiny_idx, gen, monkeypatch) -> None:
    env_root, cache_dir = tmp_path / "env", Path(os.environ["XDG_CACHE_HOME"]) / "calikd"
    with pytest.raises(DataError) as err:
        load_dataset("tiny-idx", tmp_path / "explicit")
    msg = str(err.value)
    assert str(tmp_path / "explicit" / "tiny-idx") in msg and str(cache_dir / "tiny-idx") in msg
    assert "calikd data fetch tiny-idx" in msg and "--data-dir" in msg
    # $CALIKD_DATA is searched, and download=True fetches there.
    monkeypatch.setenv("CALIKD_DATA", str(env_root))
    ds = load_dataset("tiny-idx", download=True, val_fraction=0.0)
    assert (env_root / "tiny-idx" / "train-images-idx3-ubyte.gz").is_file() and len(ds.train) == 40


def test_fashion_mnist_not_found_mentions_apt(tmp_path: Path, monkeypatch) -> None:
    # Pretend the Debian folder is absent, whatever this machine has.
    monkeypatch.setattr("calikd.data.locate.candidate_dirs", lambda s, d: [tmp_path / "nowhere"])
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", tmp_path)
    assert "apt-get install -y dataset-fashion-mnist" in str(err.value)
    assert "calikd data fetch fashion-mnist" in str(err.value)


def _real_fashion_dir() -> Path | None:
    d = Path("/usr/share/datasets/fashion-mnist")
    return d if all((d / f"{f.stem}.gz").is_file() for f in FASHION_MNIST_FILES) else None


def test_real_fashion_mnist() -> None:
    """The Debian files: 60000/10000 samples, 10 classes, content SHA-256 verified on load."""
    if _real_fashion_dir() is None:
        if os.environ.get("CALIKD_REQUIRE_REAL_DATA") == "1":
            pytest.fail("CALIKD_REQUIRE_REAL_DATA=1 but /usr/share/datasets/fashion-mnist is missing")
        pytest.skip("Fashion-MNIST files not installed (apt-get install -y dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist")
    assert ds.info == dataset_info("fmnist")
    assert len(ds.train) + len(ds.val) == 60000 and len(ds.val) == 6000 and len(ds.test) == 10000
    assert ds.train.images.shape[1:] == (1, 28, 28) and ds.train.images.dtype.is_floating_point is False
    counts = np.bincount(ds.test.labels.numpy(), minlength=10)
    assert counts.tolist() == [1000] * 10
    assert np.bincount(ds.val.labels.numpy()).tolist() == [600] * 10
    mean = ds.train.images.float().mean().item() / 255
    assert abs(mean - ds.info.mean[0]) < 0.01


def test_real_fashion_mnist_checksum_mismatch(tmp_path: Path, gen) -> None:
    """A file that is not the official one is refused (it would be found in data_dir first)."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for f in FASHION_MNIST_FILES:
        array = gen.idx_images(3) if f.kind == "images" else gen.idx_labels(3)
        (folder / f"{f.stem}.gz").write_bytes(gen.gz(gen.write_idx(array)))
    with pytest.raises(ChecksumError, match="expected " + FASHION_MNIST_FILES[0].content_sha256):
        load_dataset("fashion-mnist", tmp_path)


def test_fashion_files_are_not_taken_for_mnist(tmp_path: Path) -> None:
    src = _real_fashion_dir()
    if src is None:
        pytest.skip("Fashion-MNIST files not installed")
    (tmp_path / "mnist").mkdir()
    for f in FASHION_MNIST_FILES:
        (tmp_path / "mnist" / f"{f.stem}.gz").symlink_to(src / f"{f.stem}.gz")
    with pytest.raises(DataError, match=r"is fashion-mnist's .*, not mnist's"):
        load_dataset("mnist", tmp_path)
