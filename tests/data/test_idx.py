"""IDX reader: good, truncated, wrong-magic and inconsistent files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calikd.data import read_idx
from calikd.data.idx import parse_idx
from calikd.errors import ChecksumError, DataError


def test_reads_raw_and_gzip_identically(tmp_path: Path, gen) -> None:
    images = gen.idx_images(5)
    raw = gen.write_idx(images)
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gen.gz(raw))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name, expected_ndim=3, expected_count=5, expected_sha256=gen.sha256_of(raw))
        assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
        np.testing.assert_array_equal(out, images)


def test_labels_file(tmp_path: Path, gen) -> None:
    labels = gen.idx_labels(7)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gen.write_idx(labels))
    np.testing.assert_array_equal(read_idx(path, expected_ndim=1), labels)


def test_truncated_file_names_expected_and_found_bytes(tmp_path: Path, gen) -> None:
    raw = gen.write_idx(gen.idx_images(3))
    path = tmp_path / "t-idx3-ubyte.gz"
    path.write_bytes(gen.gz(raw[:-100]))
    with pytest.raises(DataError, match=r"is truncated: expected 2352 bytes of data, found 2252") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_trailing_bytes_are_an_error(tmp_path: Path, gen) -> None:
    path = tmp_path / "x"
    path.write_bytes(gen.write_idx(gen.idx_labels(4)) + b"\x00")
    with pytest.raises(DataError, match="past the 4 its header announces"):
        read_idx(path)


def test_wrong_magic_number(tmp_path: Path, gen) -> None:
    labels_file = tmp_path / "labels"
    labels_file.write_bytes(gen.write_idx(gen.idx_labels(4)))
    with pytest.raises(DataError, match=r"magic number 0x00000801.*expected 0x00000803"):
        read_idx(labels_file, expected_ndim=3)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(garbage)


def test_wrong_dtype_byte(tmp_path: Path, gen) -> None:
    raw = bytearray(gen.write_idx(gen.idx_labels(4)))
    raw[2] = 0x0D  # float
    path = tmp_path / "f"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="data type 0x0d"):
        read_idx(path)


def test_count_mismatch_with_official_count(tmp_path: Path, gen) -> None:
    path = tmp_path / "x"
    path.write_bytes(gen.write_idx(gen.idx_labels(4)))
    with pytest.raises(DataError, match="holds 4 items; the official file holds 10000"):
        read_idx(path, expected_count=10000)


def test_checksum_mismatch_is_checksum_error(tmp_path: Path, gen) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gen.gz(gen.write_idx(gen.idx_labels(4))))
    with pytest.raises(ChecksumError, match="expected " + "0" * 64):
        read_idx(path, expected_sha256="0" * 64)


def test_corrupt_gzip_names_the_file(tmp_path: Path, gen) -> None:
    data = bytearray(gen.gz(gen.write_idx(gen.idx_images(3))))
    data[20:40] = bytes(20)
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"broken-idx3-ubyte\.gz"):
        read_idx(path)


def test_truncated_header() -> None:
    with pytest.raises(DataError, match="truncated"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]))
