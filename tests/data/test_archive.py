"""Safe archive extraction."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from calikd.data import safe_extract
from calikd.errors import DataError, UnsafeArchiveError


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_extracts_tar_gz_and_zip(tmp_path: Path, gen) -> None:
    members = {"top/a.txt": b"A", "top/sub/b.bin": b"\x00\x01"}
    for name, data in (("x.tar.gz", gen.make_tar_gz(members)), ("x.zip", gen.make_zip(members))):
        archive = tmp_path / name
        archive.write_bytes(data)
        dest = safe_extract(archive, tmp_path / f"out-{name}")
        assert (dest / "top/a.txt").read_bytes() == b"A"
        assert (dest / "top/sub/b.bin").read_bytes() == b"\x00\x01"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _symlink(tf: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tf.addfile(info)


def _hardlink(tf: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/hard")
    info.type = tarfile.LNKTYPE
    info.linkname = "top/a.txt"
    tf.addfile(info)


def _device(tf: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    tf.addfile(info)


def _fifo(tf: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/fifo")
    info.type = tarfile.FIFOTYPE
    tf.addfile(info)


@pytest.mark.parametrize(
    ("members", "extra", "member_name"),
    [
        ({"top/a.txt": b"A", "../escape.txt": b"evil"}, None, "../escape.txt"),
        ({"top/a.txt": b"A", "top/../../escape.txt": b"evil"}, None, "top/../../escape.txt"),
        ({"top/a.txt": b"A", "/tmp/abs-escape.txt": b"evil"}, None, "/tmp/abs-escape.txt"),
        ({"top/a.txt": b"A"}, _symlink, "top/link"),
        ({"top/a.txt": b"A"}, _hardlink, "top/hard"),
        ({"top/a.txt": b"A"}, _device, "top/dev"),
        ({"top/a.txt": b"A"}, _fifo, "top/fifo"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, gen, members, extra, member_name) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "bad.tar.gz"
    archive.write_bytes(gen.make_tar_gz(members, extra=extra))
    before = _listing(tmp_path)
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, work / "dest" / "ds")
    assert member_name in str(err.value)
    assert set(_listing(tmp_path)) - set(before) <= {"work/dest"}  # at most the empty parent folder
    assert not (work / "dest" / "ds").exists()
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/abs-escape.txt").exists()


def test_unsafe_zip_members_are_refused(tmp_path: Path, gen) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(gen.make_zip({"ok.txt": b"1", "../../evil.txt": b"2"}))
    with pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./evil\.txt"):
        safe_extract(archive, tmp_path / "dest")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16  # symlink
        zf.writestr(info, "/etc/passwd")
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="symlink member 'link'"):
        safe_extract(archive, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_corrupt_archive_leaves_nothing(tmp_path: Path, gen) -> None:
    data = gen.make_tar_gz({f"top/f{i}.bin": bytes([i]) * 50_000 for i in range(5)})
    archive = tmp_path / "trunc.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"trunc\.tar\.gz"):
        safe_extract(archive, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trunc.tar.gz"]
    archive.write_bytes(b"neither tar nor zip")
    with pytest.raises(DataError, match="not a tar or zip"):
        safe_extract(archive, tmp_path / "dest")


def test_refuses_non_empty_destination(tmp_path: Path, gen) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(gen.make_tar_gz({"a": b"1"}))
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep").write_text("mine")
    with pytest.raises(DataError, match="already exists and is not empty"):
        safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "keep").read_text() == "mine"
