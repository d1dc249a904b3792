"""Verified downloads: stream to a temporary file, check SHA-256, then rename into place atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from calikd.errors import ChecksumError, ConfigError, DataError

ENV_MIRROR = "CALIKD_MIRROR"
_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def check_sha256(value: str | None, what: str = "sha256") -> str | None:
    """Validate a hex SHA-256 (64 hex digits) and return it lower-cased; ``None`` passes through."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.match(value.strip()):
        raise ConfigError(f"{what} must be 64 hexadecimal digits, got {value!r}")
    return value.strip().lower()


def check_url(url: str) -> str:
    """Accept only http(s) and file URLs."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ConfigError(f"cannot download '{url}': only http, https and file URLs are supported")
    return url


def join_url(base: str, filename: str) -> str:
    """``base`` + ``/`` + ``filename`` (one slash)."""
    return base.rstrip("/") + "/" + filename


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None,
    *,
    allow_unverified: bool = False,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The body is streamed to a temporary file beside ``dest`` while its SHA-256 is computed; on a mismatch
    the temporary file is deleted and a :class:`ChecksumError` names the expected and actual hash. Only a
    verified file is renamed to ``dest``. Without ``sha256`` the download is refused unless
    ``allow_unverified=True``. ``progress=None`` shows a bar only on a terminal.
    """
    check_url(url)
    expected = check_sha256(sha256)
    if expected is None and not allow_unverified:
        raise ChecksumError(
            f"refusing to download '{url}' without a SHA-256 to verify it against",
            hint="pass the expected hash (--sha256 HASH / sha256=...) or, if you trust the source, "
            "--allow-unverified (allow_unverified=True)",
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # scheme checked above
            except urllib.error.HTTPError as exc:
                raise DataError(f"download of '{url}' failed: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataError(f"download of '{url}' failed: {reason}") from exc
            with response:
                total = response.headers.get("Content-Length")
                bar = tqdm(
                    total=int(total) if total and total.isdigit() else None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=(None if progress is None else not progress),
                    leave=False,
                )
                received = 0
                with bar:
                    try:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except OSError as exc:
                        raise DataError(f"download of '{url}' was interrupted: {exc}") from exc
                if total and total.isdigit() and int(total) != received:
                    raise DataError(f"download of '{url}' is incomplete: got {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"checksum mismatch for '{url}': expected SHA-256 {expected}, got {actual}; "
                "the download was deleted",
                hint="retry (the transfer may have been corrupted); if it persists, the file on the server "
                "changed or the mirror is wrong",
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest


def download_first(
    urls: list[str],
    dest: str | os.PathLike[str],
    sha256: str | None,
    *,
    allow_unverified: bool = False,
    progress: bool | None = None,
) -> Path:
    """Try each URL in turn; a network failure moves on to the next, a checksum mismatch stops at once."""
    errors: list[str] = []
    for url in urls:
        try:
            return download(url, dest, sha256, allow_unverified=allow_unverified, progress=progress)
        except ChecksumError:
            raise
        except DataError as exc:
            errors.append(exc.message)
    raise DataError(
        "every source failed:\n" + "\n".join(f"  - {e}" for e in errors),
        hint=f"check your network, or point ${ENV_MIRROR} / base_url= at a mirror that holds the files",
    )
