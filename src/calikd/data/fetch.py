"""Download, verify and unpack a registered dataset into its data folder.

Sources: ``base_url=`` (the folder holding the dataset's files), else ``$CALIKD_MIRROR/<folder name>/``,
else the official URLs of the dataset (tried in order). Every file is SHA-256 verified before it is moved
into place: gzip files whose decompressed SHA-256 is known are checked on their content (so a recompressed
mirror copy still verifies), others on their bytes. A dataset without a published hash is refused unless
the caller passes ``sha256=`` or ``allow_unverified=True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from calikd.data.archive import safe_extract
from calikd.data.download import ENV_MIRROR, check_sha256, download_first, join_url
from calikd.data.idx import read_bytes_maybe_gzip, sha256_hex
from calikd.data.locate import fetch_target, locate, not_found_error
from calikd.data.registry import BuildContext, DatasetSpec, Resource, get_spec
from calikd.errors import ChecksumError, ConfigError, DataError


def source_bases(spec: DatasetSpec, base_url: str | None = None) -> list[str]:
    """Base URLs to try for ``spec``'s files, in order."""
    if base_url:
        return [base_url]
    mirror = os.environ.get(ENV_MIRROR)
    if mirror:
        return [join_url(mirror, spec.folder_name)]
    return list(spec.urls)


def _verify_content(path: Path, expected: str, url_hint: str) -> None:
    actual = sha256_hex(read_bytes_maybe_gzip(path))
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for '{url_hint}': expected content SHA-256 {expected}, got {actual}; "
            "the download was deleted",
            hint="retry; if it persists, the mirror serves a different file",
        )


def _fetch_resource(
    res: Resource, bases: list[str], dest: Path, sha256: str | None, allow_unverified: bool
) -> None:
    urls = [join_url(b, res.filename) for b in bases]
    if sha256 is None and res.content_sha256 is not None:
        # Checked on the decompressed content right below, inside the temporary folder.
        download_first(urls, dest, None, allow_unverified=True)
        _verify_content(dest, res.content_sha256, urls[0])
        return
    expected = sha256 if sha256 is not None else res.sha256
    if expected is None and not allow_unverified:
        raise ChecksumError(
            f"no published SHA-256 is known for '{res.filename}', so its download cannot be verified",
            hint="pass the expected hash (--sha256 HASH / sha256=...) or, if you trust the source, "
            "--allow-unverified (allow_unverified=True)",
        )
    download_first(urls, dest, expected, allow_unverified=allow_unverified)


def fetch_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    allow_unverified: bool = False,
) -> Path:
    """Download, verify and extract dataset ``name``; return the folder its loader reads.

    Goes to ``data_dir/<name>``, else ``$CALIKD_DATA/<name>``, else the cache. Returns at once when the
    dataset is already there. ``sha256`` overrides the expected hash of a single-file dataset.
    """
    spec = get_spec(name)
    if not spec.downloadable:
        raise ConfigError(
            f"dataset '{spec.name}' cannot be downloaded",
            hint="imagefolder reads your own folder (data_dir=); synthetic needs no files",
        )
    override = check_sha256(sha256, "--sha256")
    if override is not None and len(spec.resources) != 1:
        raise ConfigError(
            f"--sha256 applies to single-file datasets; '{spec.name}' has {len(spec.resources)} files"
        )
    target = fetch_target(spec, data_dir)
    if target.is_dir() and spec.find is not None:
        found = spec.find(target)
        if found is not None:
            return found
    bases = source_bases(spec, base_url)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.fetch-", dir=target.parent))
    except OSError as exc:
        raise DataError(
            f"cannot download '{spec.name}' into '{target.parent}': {exc.strerror or exc}",
            hint="choose a writable folder with --data-dir (data_dir=) or $CALIKD_DATA",
        ) from exc
    try:
        for res in spec.resources:
            _fetch_resource(res, bases, tmp / res.filename, override, allow_unverified)
        archives = [res for res in spec.resources if res.extract]
        if archives:
            if len(archives) != 1 or len(spec.resources) != 1:  # pragma: no cover - no such dataset yet
                raise ConfigError(f"dataset '{spec.name}' mixes archives and plain files")
            safe_extract(tmp / archives[0].filename, target)
        else:
            target.mkdir(parents=True, exist_ok=True)
            for res in spec.resources:
                os.replace(tmp / res.filename, target / res.filename)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    found = spec.find(target) if spec.find is not None else target
    if found is None:
        raise DataError(
            f"downloaded '{spec.name}' into '{target}', but its files are not in the expected layout",
            hint="the mirror may serve a different archive; remove the folder and try the official source",
        )
    return found


def dataset_root(ctx: BuildContext) -> Path:
    """The folder holding ``ctx.spec``'s files: found locally, else fetched when ``download`` is set."""
    found = locate(ctx.spec, ctx.data_dir)
    if found is not None:
        return found
    if ctx.download:
        return fetch_dataset(ctx.spec.name, ctx.data_dir)
    raise not_found_error(ctx.spec, ctx.data_dir)
