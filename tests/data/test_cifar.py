"""CIFAR binary archives fetched from a local server and loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calikd.data import fetch_dataset, load_dataset, read_cifar_binary
from calikd.errors import ChecksumError, DataError, UnsafeArchiveError


def test_cifar10_fetch_and_load(tmp_path: Path, http_server, gen) -> None:
    archive, expected = gen.cifar10_archive(per_batch=2)
    http_server.put("mirror/cifar-10-binary.tar.gz", archive)
    root = fetch_dataset(
        "cifar10", tmp_path, base_url=http_server.url + "mirror/", sha256=gen.sha256_of(archive)
    )
    assert root == tmp_path / "cifar10" / "cifar-10-batches-bin"
    assert not [p for p in tmp_path.rglob("*") if ".fetch-" in p.name or ".partial-" in p.name]

    ds = load_dataset("cifar10", tmp_path, val_fraction=0.0, strict_counts=False)
    assert ds.info.name == "cifar10" and ds.info.num_classes == 10 and ds.info.in_channels == 3
    assert len(ds.train) == 10 and len(ds.val) == 0 and len(ds.test) == 2
    np.testing.assert_array_equal(ds.train.images.numpy(), expected["train_images"])
    np.testing.assert_array_equal(ds.train.labels.numpy(), expected["train_labels"])
    np.testing.assert_array_equal(ds.test.images.numpy(), expected["test_images"])
    np.testing.assert_array_equal(ds.test.labels.numpy(), expected["test_labels"])
    # The official counts are checked unless told otherwise.
    with pytest.raises(DataError, match="holds 2 records; the official file holds 10000"):
        load_dataset("cifar10", tmp_path)
    # A second fetch finds it in place and downloads nothing.
    (Path(http_server.root) / "mirror" / "cifar-10-binary.tar.gz").unlink()
    assert fetch_dataset("cifar10", tmp_path, base_url=http_server.url + "mirror/") == root


def test_cifar10_official_hash_rejects_other_archive(tmp_path: Path, http_server, gen) -> None:
    archive, _ = gen.cifar10_archive()
    http_server.put("cifar-10-binary.tar.gz", archive)
    with pytest.raises(ChecksumError) as err:
        fetch_dataset("cifar10", tmp_path, base_url=http_server.url)
    assert "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd" in str(err.value)
    assert gen.sha256_of(archive) in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_mirror_env_and_download_flag(tmp_path: Path, http_server, gen, monkeypatch) -> None:
    archive, _ = gen.cifar10_archive(per_batch=1)
    http_server.put("cifar10/cifar-10-binary.tar.gz", archive)
    monkeypatch.setenv("CALIKD_MIRROR", http_server.url)
    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar10", tmp_path, strict_counts=False)
    with pytest.raises(ChecksumError):  # the mirror's archive is not the official one
        load_dataset("cifar10", tmp_path, strict_counts=False, download=True)
    fetch_dataset("cifar10", sha256=gen.sha256_of(archive))  # no data_dir: into the cache
    ds = load_dataset("cifar10", val_fraction=0.0, strict_counts=False)
    assert len(ds.train) == 5


def test_corrupt_archive_is_data_error(tmp_path: Path, http_server, gen) -> None:
    archive, _ = gen.cifar10_archive(per_batch=50)
    broken = archive[: len(archive) - 4000]
    http_server.put("cifar-10-binary.tar.gz", broken)
    with pytest.raises(DataError, match="corrupt or truncated"):
        fetch_dataset("cifar10", tmp_path, base_url=http_server.url, sha256=gen.sha256_of(broken))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("hostile", ["../evil.txt", "cifar-10-batches-bin/../../evil.txt"])
def test_path_traversal_archive(tmp_path: Path, http_server, gen, hostile: str) -> None:
    archive = gen.make_tar_gz({"cifar-10-batches-bin/test_batch.bin": b"x" * 3073, hostile: b"evil"})
    http_server.put("cifar-10-binary.tar.gz", archive)
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match=r"evil\.txt"):
        fetch_dataset("cifar10", data_dir, base_url=http_server.url, sha256=gen.sha256_of(archive))
    assert not list(tmp_path.rglob("evil.txt"))
    assert list(data_dir.iterdir()) == []


def test_symlink_archive(tmp_path: Path, http_server, gen) -> None:
    import tarfile

    def add_link(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/hostname"
        tf.addfile(info)

    archive = gen.make_tar_gz({"cifar-10-batches-bin/test_batch.bin": b"x" * 3073}, extra=add_link)
    http_server.put("cifar-10-binary.tar.gz", archive)
    with pytest.raises(UnsafeArchiveError, match=r"symlink member 'cifar-10-batches-bin/data_batch_1\.bin'"):
        fetch_dataset("cifar10", tmp_path, base_url=http_server.url, sha256=gen.sha256_of(archive))
    assert list(tmp_path.iterdir()) == []


def test_cifar100_fine_and_coarse(tmp_path: Path, http_server, gen) -> None:
    archive, expected = gen.cifar100_archive()
    http_server.put("cifar-100-binary.tar.gz", archive)
    fetch_dataset("cifar100", tmp_path, base_url=http_server.url, sha256=gen.sha256_of(archive))
    fine = load_dataset("cifar100", tmp_path, val_fraction=0.0, strict_counts=False)
    coarse = load_dataset("cifar100-coarse", tmp_path, val_fraction=0.0, strict_counts=False)
    assert fine.info.num_classes == 100 and coarse.info.num_classes == 20
    assert coarse.info.classes[0] == "aquatic_mammals" and fine.info.classes[-1] == "worm"
    np.testing.assert_array_equal(fine.train.labels.numpy(), expected["train_fine"])
    np.testing.assert_array_equal(coarse.train.labels.numpy(), expected["train_coarse"])
    np.testing.assert_array_equal(fine.test.labels.numpy(), expected["test_fine"])
    np.testing.assert_array_equal(coarse.test.labels.numpy(), expected["test_coarse"])
    np.testing.assert_array_equal(coarse.train.images.numpy(), expected["train_images"])
    np.testing.assert_array_equal(fine.test.images.numpy(), expected["test_images"])


def test_read_cifar_binary_checks_record_size(tmp_path: Path, gen) -> None:
    data, images = gen.cifar_records([(3,), (4,)], seed=0)
    path = tmp_path / "batch.bin"
    path.write_bytes(data)
    out_images, labels = read_cifar_binary(path)
    np.testing.assert_array_equal(out_images, images)
    assert labels[:, 0].tolist() == [3, 4]
    path.write_bytes(data[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_cifar_binary(path)


def test_wrong_label_names_file(tmp_path: Path, gen) -> None:
    archive, _ = gen.cifar10_archive(per_batch=1)
    (tmp_path / "a.tar.gz").write_bytes(archive)
    from calikd.data import safe_extract

    root = safe_extract(tmp_path / "a.tar.gz", tmp_path / "cifar10")
    (root / "cifar-10-batches-bin" / "batches.meta.txt").write_text("apple\npear\n")
    with pytest.raises(DataError, match="class names"):
        load_dataset("cifar10", tmp_path, strict_counts=False)
