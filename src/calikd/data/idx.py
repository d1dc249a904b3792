"""Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Layout: 2 zero bytes, a dtype byte (0x08 = unsigned byte, the only one accepted), the number of dimensions,
then one big-endian uint32 per dimension and the data. Images files have 3 dimensions (magic 0x00000803),
label files 1 (magic 0x00000801).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from calikd.errors import ChecksumError, DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes_maybe_gzip(path: str | os.PathLike[str]) -> bytes:
    """The (decompressed, if gzip) content of ``path``; a corrupt gzip is a :class:`DataError` naming it."""
    return gunzip_maybe(read_file_bytes(path), path)


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path`` as stored; an unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from exc


def gunzip_maybe(raw: bytes, path: str | os.PathLike[str]) -> bytes:
    """``raw`` decompressed if it is gzip (a corrupt gzip is a :class:`DataError` naming ``path``)."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"'{path}' is not a valid gzip file ({exc})",
            hint="delete it and download it again (`calikd data fetch NAME`)",
        ) from exc


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse_idx(
    content: bytes,
    *,
    source: str = "<bytes>",
    expected_ndim: int | None = None,
    expected_count: int | None = None,
    expected_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Parse IDX ``content`` into a uint8 array of the dimensions its header gives, checking every size."""
    if len(content) < 4:
        raise DataError(f"file {source} is truncated: it has {len(content)} bytes, less than an IDX header")
    zero, dtype, ndim = content[:2], content[2], content[3]
    magic = int.from_bytes(content[:4], "big")
    if zero != b"\x00\x00" or ndim == 0:
        raise DataError(f"file {source} is not an IDX file (magic number 0x{magic:08x})")
    if dtype != 0x08:
        raise DataError(
            f"file {source} has IDX data type 0x{dtype:02x}; only unsigned bytes (0x08) are supported"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        want = {3: IMAGES_MAGIC, 1: LABELS_MAGIC}.get(expected_ndim)
        want_text = f" 0x{want:08x}" if want is not None else ""
        raise DataError(
            f"file {source} has magic number 0x{magic:08x} ({ndim} dimensions); expected{want_text} "
            f"({expected_ndim} dimensions)"
        )
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(
            f"file {source} is truncated: its IDX header needs {header} bytes, found {len(content)}"
        )
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = math.prod(dims)  # a Python int: numpy's int64 product would wrap around for huge dims
    found = len(content) - header
    if found < expected_bytes:
        raise DataError(
            f"file {source} is truncated: expected {expected_bytes} bytes of data, found {found}",
            hint="delete it and download it again",
        )
    if found > expected_bytes:
        raise DataError(
            f"file {source} has {found - expected_bytes} bytes of data past the {expected_bytes} its header "
            "announces"
        )
    if expected_count is not None and dims[0] != expected_count:
        raise DataError(f"file {source} holds {dims[0]} items; the official file holds {expected_count}")
    if expected_shape is not None and dims[1:] != tuple(expected_shape):
        raise DataError(f"file {source} has items of shape {dims[1:]}; expected {tuple(expected_shape)}")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(
    path: str | os.PathLike[str],
    *,
    expected_ndim: int | None = None,
    expected_count: int | None = None,
    expected_shape: tuple[int, ...] | None = None,
    expected_sha256: str | None = None,
) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a read-only uint8 array.

    ``expected_sha256`` is checked against the *decompressed* content (a mismatch is a
    :class:`ChecksumError`), so recompressed copies of an official file still verify.
    """
    path = Path(path)
    content = read_bytes_maybe_gzip(path)
    if expected_sha256 is not None:
        actual = sha256_hex(content)
        if actual != expected_sha256.lower():
            raise ChecksumError(
                f"file {path} does not hold the expected data: SHA-256 of its content is {actual}, "
                f"expected {expected_sha256}",
                hint="the file is corrupt or not the official one; delete it and download it again",
            )
    return parse_idx(
        content,
        source=str(path),
        expected_ndim=expected_ndim,
        expected_count=expected_count,
        expected_shape=expected_shape,
    )


def write_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (used to build test fixtures and exports)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()
