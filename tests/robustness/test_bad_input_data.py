"""Bad dataset files, archives and downloads through the CLI: each is refused with a message naming the file
and what is wrong with it, exit code 2, and nothing left behind (no run folder, no extracted file, no
download)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import FAST, MODEL, RunCli, assert_refused

from calikd.data.idx import write_idx


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dataset from the machine's cache or environment; default outputs land in ``tmp_path``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("CALIKD_DATA", raising=False)
    monkeypatch.delenv("CALIKD_MIRROR", raising=False)
    monkeypatch.chdir(tmp_path)


def _mnist_folder(root: Path, n: int = 5) -> Path:
    """A folder ``root/mnist`` with four small, well-formed (raw) IDX files; they are read train images
    first, so a damaged ``train-images-idx3-ubyte`` is what fails (before the official counts are checked)."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    images, labels = np.zeros((n, 28, 28), np.uint8), np.arange(n, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(write_idx(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(write_idx(labels))
    return folder


def _train_on(dataset: str, data_dir: Path, out: Path) -> list[str]:
    return [
        "train-teacher",
        "--dataset",
        dataset,
        "--data-dir",
        str(data_dir),
        *MODEL,
        *FAST,
        "--out",
        str(out),
    ]


# ----------------------------------------------------------------------------------------------- IDX files
def test_idx_file_with_the_wrong_magic_number(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _mnist_folder(tmp_path / "data")
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(write_idx(np.zeros(5, np.uint8)))  # a labels file (magic 0x801) under an images name
    assert_refused(
        run_cli,
        _train_on("mnist", tmp_path / "data", tmp_path / "run"),
        f"file {images} has magic number 0x00000801 (1 dimensions); expected 0x00000803 (3 dimensions)",
        root=tmp_path,
    )


def test_idx_file_that_is_not_idx_at_all(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _mnist_folder(tmp_path / "data")
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(b"PK\x03\x04 a zip file, not IDX")
    assert_refused(
        run_cli,
        ["data", "info", "mnist", "--data-dir", tmp_path / "data"],
        f"file {images} is not an IDX file (magic number 0x504b0304)",
        root=tmp_path,
    )


def test_truncated_gzipped_idx_file(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _mnist_folder(tmp_path / "data")
    raw = folder / "train-images-idx3-ubyte"
    packed = folder / "train-images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes()[:-100], mtime=0))  # data cut short, gzip intact
    raw.unlink()
    assert_refused(
        run_cli,
        _train_on("mnist", tmp_path / "data", tmp_path / "run"),
        f"file {packed} is truncated: expected 3920 bytes of data, found 3820",
        "delete it and download it again",
        root=tmp_path,
    )


def test_truncated_gzip_stream(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _mnist_folder(tmp_path / "data")
    raw = folder / "train-images-idx3-ubyte"
    packed = folder / "train-images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes(), mtime=0)[:-12])  # the gzip stream itself is cut
    raw.unlink()
    assert_refused(
        run_cli,
        _train_on("mnist", tmp_path / "data", tmp_path / "run"),
        f"'{packed}' is not a valid gzip file",
        root=tmp_path,
    )


def test_fashion_mnist_folder_holding_other_files(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _mnist_folder(tmp_path / "data").rename(tmp_path / "data" / "fashion-mnist")
    assert_refused(
        run_cli,
        _train_on("fashion-mnist", tmp_path / "data", tmp_path / "run"),
        f"file {folder / 'train-images-idx3-ubyte'} does not hold the official fashion-mnist",
        "calikd data fetch fashion-mnist",
        root=tmp_path,
    )


# ---------------------------------------------------------------------------------------- CIFAR binaries
def test_cifar10_batch_of_the_wrong_size(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "data" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(bytes(3073 * 2))
    (folder / "data_batch_1.bin").write_bytes(bytes(3073 * 2 + 100))
    assert_refused(
        run_cli,
        _train_on("cifar10", tmp_path / "data", tmp_path / "run"),
        f"file {folder / 'data_batch_1.bin'} is truncated: 6246 bytes is not a whole number of 3073-byte "
        "records (2 complete records and 100 bytes)",
        root=tmp_path,
    )


def test_cifar100_file_with_too_few_records(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "data" / "cifar-100-binary"
    folder.mkdir(parents=True)
    (folder / "train.bin").write_bytes(bytes(3074 * 3))  # whole records, but not the official 50000
    (folder / "test.bin").write_bytes(bytes(3074 * 2))
    assert_refused(
        run_cli,
        ["data", "info", "cifar100", "--data-dir", tmp_path / "data"],
        f"file {folder / 'train.bin'} holds 3 records; the official file holds 50000",
        root=tmp_path,
    )


# --------------------------------------------------------------------------------- archives and downloads
def _tar_gz(members: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tf)
    return buf.getvalue()


def _link(kind: bytes, target: str) -> Callable[[tarfile.TarFile], None]:
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type, info.linkname = kind, target
        tf.addfile(info)

    return add


def _data_dir(tmp_path: Path) -> Path:
    """An existing, empty data folder: a refused fetch must leave it empty."""
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


GOOD = {"cifar-10-batches-bin/test_batch.bin": bytes(3073)}


@pytest.mark.parametrize(
    ("members", "extra", "message"),
    [
        (
            {**GOOD, "cifar-10-batches-bin/../../evil.txt": b"evil"},
            None,
            "has a member escaping the target folder: 'cifar-10-batches-bin/../../evil.txt'",
        ),
        ({**GOOD, "{root}/evil.txt": b"evil"}, None, "has a member with an absolute path: '{root}/evil.txt'"),
        (
            GOOD,
            _link(tarfile.SYMTYPE, "/etc/passwd"),
            "has a symlink member 'cifar-10-batches-bin/data_batch_1.bin' -> '/etc/passwd'",
        ),
        (
            GOOD,
            _link(tarfile.LNKTYPE, "cifar-10-batches-bin/test_batch.bin"),
            "has a hard link member 'cifar-10-batches-bin/data_batch_1.bin'",
        ),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_fetch_refuses_unsafe_archive_members(
    members: dict[str, bytes],
    extra: Callable[[tarfile.TarFile], None] | None,
    message: str,
    tmp_path: Path,
    run_cli: RunCli,
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = _tar_gz({k.format(root=tmp_path): v for k, v in members.items()}, extra)
    (mirror / "cifar-10-binary.tar.gz").write_bytes(archive)
    argv = [
        "data",
        "fetch",
        "cifar10",
        "--data-dir",
        _data_dir(tmp_path),
        "--base-url",
        mirror.as_uri() + "/",
    ]
    argv += ["--sha256", hashlib.sha256(archive).hexdigest()]  # verified, so the members are what is checked
    assert_refused(run_cli, argv, message.format(root=tmp_path), root=tmp_path)
    assert not list(tmp_path.rglob("evil.txt")) and not list((tmp_path / "data").iterdir())


def test_fetch_deletes_a_download_whose_checksum_does_not_match(tmp_path: Path, run_cli: RunCli) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = _tar_gz(GOOD)
    (mirror / "cifar-10-binary.tar.gz").write_bytes(archive)
    argv = [
        "data",
        "fetch",
        "cifar10",
        "--data-dir",
        _data_dir(tmp_path),
        "--base-url",
        mirror.as_uri() + "/",
    ]
    assert_refused(
        run_cli,
        argv,
        "checksum mismatch for",
        f"got {hashlib.sha256(archive).hexdigest()}; the download was deleted",
        root=tmp_path,
    )
    assert not list((tmp_path / "data").iterdir())


def test_fetch_refuses_a_malformed_sha256(tmp_path: Path, run_cli: RunCli) -> None:
    argv = ["data", "fetch", "cifar10", "--data-dir", tmp_path / "data", "--sha256", "c4a38c50"]
    assert_refused(run_cli, argv, "--sha256 must be 64 hexadecimal digits, got 'c4a38c50'", root=tmp_path)


def test_fetch_refuses_a_truncated_archive(tmp_path: Path, run_cli: RunCli) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    archive = _tar_gz({"cifar-10-batches-bin/test_batch.bin": rng.bytes(3073 * 20)})[:-2000]
    (mirror / "cifar-10-binary.tar.gz").write_bytes(archive)
    argv = [
        "data",
        "fetch",
        "cifar10",
        "--data-dir",
        _data_dir(tmp_path),
        "--base-url",
        mirror.as_uri() + "/",
    ]
    argv += ["--sha256", hashlib.sha256(archive).hexdigest()]
    assert_refused(run_cli, argv, "cifar-10-binary.tar.gz' is corrupt or truncated", root=tmp_path)
