"""file_sha256: fixed values, any chunk size."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from calikd.utils.hashing import file_sha256


def test_file_sha256_fixed_values(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = os.urandom(5000)
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big", chunk_size=64) == hashlib.sha256(data).hexdigest()
