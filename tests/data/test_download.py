"""The downloader against a real local HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from calikd.data import download
from calikd.data.download import download_first
from calikd.errors import ChecksumError, ConfigError, DataError


def test_download_verifies_and_renames(tmp_path: Path, http_server, gen) -> None:
    payload = bytes(range(256)) * 1000
    url = http_server.put("files/blob.bin", payload)
    dest = download(url, tmp_path / "out" / "blob.bin", gen.sha256_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]  # no temp file left


def test_checksum_mismatch_deletes_the_download(tmp_path: Path, http_server, gen) -> None:
    url = http_server.put("blob.bin", b"the server's bytes")
    expected = gen.sha256_of(b"other bytes")
    out = tmp_path / "out"
    with pytest.raises(ChecksumError) as err:
        download(url, out / "blob.bin", expected, progress=False)
    msg = str(err.value)
    assert expected in msg and gen.sha256_of(b"the server's bytes") in msg
    assert list(out.iterdir()) == []


def test_refuses_without_hash_unless_allowed(tmp_path: Path, http_server) -> None:
    url = http_server.put("blob.bin", b"data")
    with pytest.raises(ChecksumError, match="without a SHA-256") as err:
        download(url, tmp_path / "blob.bin", None)
    assert "--sha256" in str(err.value) and "allow_unverified" in str(err.value)
    assert not (tmp_path / "blob.bin").exists()
    assert download(url, tmp_path / "blob.bin", None, allow_unverified=True).read_bytes() == b"data"


def test_http_error_and_bad_arguments(tmp_path: Path, http_server) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        download(http_server.url + "missing.bin", tmp_path / "x", "0" * 64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        download(http_server.url + "x", tmp_path / "x", "abc")
    with pytest.raises(ConfigError, match="only http"):
        download("ftp://example.org/x", tmp_path / "x", "0" * 64)


def test_download_first_falls_back_to_next_source(tmp_path: Path, http_server, gen) -> None:
    url = http_server.put("b/blob.bin", b"payload")
    dest = download_first(
        [http_server.url + "a/blob.bin", url],
        tmp_path / "blob.bin",
        gen.sha256_of(b"payload"),
        progress=False,
    )
    assert dest.read_bytes() == b"payload"
    with pytest.raises(DataError, match="every source failed"):
        download_first([http_server.url + "nope"], tmp_path / "y", gen.sha256_of(b"payload"))
