"""Safe extraction of tar(.gz) and zip archives.

Every member is checked before anything is written for it: absolute paths, ``..`` escaping the target,
symlinks, hard links, devices and fifos are refused with an :class:`UnsafeArchiveError` naming the member.
Extraction goes to a temporary folder beside ``dest`` that is renamed to ``dest`` only when complete, so an
error never leaves a half-extracted folder behind.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from calikd.errors import DataError, UnsafeArchiveError

_COPY_CHUNK = 1 << 20


def safe_member_path(name: str, archive: str | os.PathLike[str] = "<archive>") -> str | None:
    """Normalised relative path for member ``name``; ``None`` for the archive root (``.``).

    Raises :class:`UnsafeArchiveError` for absolute paths, drive letters, backslashes and ``..`` escapes.
    """
    if "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"archive {archive} has a member with an unsafe name: {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive {archive} has a member with an absolute path: {name!r}")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchiveError(f"archive {archive} has a member escaping the target folder: {name!r}")
    return None if norm in (".", "") else norm


def _copy(src: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


def _open_decompressed(archive: Path) -> IO[bytes]:
    """``archive`` opened through the decompressor its magic bytes name (gzip, bzip2, xz) or as is."""
    with open(archive, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _tar_members(archive: Path, tmp: Path) -> Iterator[None]:
    with _open_decompressed(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
        for member in tf:
            rel = safe_member_path(member.name, archive)
            if member.issym() or member.islnk():
                kind = "symlink" if member.issym() else "hard link"
                raise UnsafeArchiveError(
                    f"archive {archive} has a {kind} member {member.name!r} -> {member.linkname!r}; "
                    "links are not extracted"
                )
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"archive {archive} has a special member {member.name!r} (device, fifo or other); "
                    "only files and folders are extracted"
                )
            if rel is None:
                continue
            target = tmp / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                src = tf.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise DataError(f"archive {archive}: cannot read member {member.name!r}")
                with src:
                    _copy(src, target)
            yield
        # Read the compressed stream to its end, so that a truncated or corrupt one (CRC) is noticed.
        while stream.read(_COPY_CHUNK):
            pass


def _zip_members(archive: Path, tmp: Path) -> Iterator[None]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check all names first: the central directory is at hand
            safe_member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(
                    f"archive {archive} has a symlink member {info.filename!r}; links are not extracted"
                )
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # 0: type not recorded
                raise UnsafeArchiveError(
                    f"archive {archive} has a special member {info.filename!r}; only files and folders "
                    "are extracted"
                )
        for info in infos:
            rel = safe_member_path(info.filename, archive)
            if rel is None:
                continue
            target = tmp / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as src:
                    _copy(src, target)
            yield


def archive_kind(archive: str | os.PathLike[str]) -> str:
    """``"zip"`` or ``"tar"`` (plain or compressed), from the file's content; else a :class:`DataError`."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        return "zip"
    try:
        if tarfile.is_tarfile(archive):
            return "tar"
    except (OSError, EOFError, zlib.error):
        pass
    raise DataError(f"'{archive}' is not a tar or zip archive (or it is corrupt)")


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract ``archive`` (tar, tar.gz/bz2/xz or zip) into the new folder ``dest`` and return it.

    ``dest`` must not exist yet (an empty folder is replaced). Unsafe members raise
    :class:`UnsafeArchiveError`; a corrupt archive raises :class:`DataError` naming it. In both cases
    nothing is left at ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"archive '{archive}' does not exist")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(
            f"cannot extract '{archive.name}' into '{dest}': it already exists and is not empty",
            hint="remove that folder (or choose another) and try again",
        )
    kind = archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        members = _zip_members(archive, tmp) if kind == "zip" else _tar_members(archive, tmp)
        try:
            for _ in members:
                pass
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise DataError(
                f"archive '{archive}' is corrupt or truncated ({exc})",
                hint="delete it and download it again",
            ) from exc
        except OSError as exc:
            if exc.errno is not None:  # a file-system error, not a corrupt stream
                raise DataError(f"cannot extract '{archive}' into '{dest}': {exc}") from exc
            raise DataError(f"archive '{archive}' is corrupt or truncated ({exc})") from exc
        try:
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.replace(tmp, dest)
        except OSError as exc:
            raise DataError(
                f"cannot move the extracted '{archive.name}' to '{dest}': {exc.strerror or exc}",
                hint="another process may be extracting there at the same time; retry when it is done",
            ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return dest
