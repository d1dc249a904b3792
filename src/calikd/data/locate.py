"""Where dataset files are looked for, and where downloads and decoded caches go.

Lookup order for a file-based dataset ``NAME`` (its folder name is usually ``NAME``):

1. an explicit ``data_dir``: ``data_dir/NAME``, then ``data_dir`` itself;
2. ``$CALIKD_DATA/NAME``;
3. the cache, ``$XDG_CACHE_HOME/calikd/NAME`` (default ``~/.cache/calikd/NAME``);
4. system folders a dataset declares (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, Debian's
   ``dataset-fashion-mnist`` package).

Downloads go to the first of ``data_dir``, ``$CALIKD_DATA`` and the cache (``.../NAME``). Decoded image
caches always go under the cache (``.../decoded``), so that read-only data folders work.
"""

from __future__ import annotations

import os
from pathlib import Path

from calikd.data.registry import DatasetSpec
from calikd.errors import DataError

ENV_DATA = "CALIKD_DATA"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/calikd``, or ``~/.cache/calikd``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "calikd"


def candidate_dirs(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Folders searched for ``spec``'s files, in order (duplicates removed)."""
    folder = spec.folder_name
    dirs: list[Path] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [root / folder, root]
    env = os.environ.get(ENV_DATA)
    if env:
        dirs.append(Path(env).expanduser() / folder)
    dirs.append(cache_root() / folder)
    dirs += list(spec.system_dirs)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def locate(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The first folder holding ``spec``'s files (as returned by ``spec.find``), or ``None``."""
    if spec.find is None:
        return None
    for d in candidate_dirs(spec, data_dir):
        if d.is_dir():
            found = spec.find(d)
            if found is not None:
                return found
    return None


def fetch_target(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> Path:
    """Where a download of ``spec`` goes: ``data_dir``, ``$CALIKD_DATA`` or the cache, + its folder name."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
    elif os.environ.get(ENV_DATA):
        root = Path(os.environ[ENV_DATA]).expanduser()
    else:
        root = cache_root()
    return root / spec.folder_name


def not_found_error(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> DataError:
    """A :class:`DataError` listing the folders searched and the ways to get the dataset."""
    searched = "\n".join(f"  - {d}" for d in candidate_dirs(spec, data_dir))
    ways = []
    if spec.downloadable:
        ways.append(f"`calikd data fetch {spec.name}` (or load_dataset(..., download=True))")
    ways += list(spec.install_hints)
    ways.append(f"pass --data-dir (data_dir=) pointing to a folder that holds it, or set ${ENV_DATA}")
    return DataError(
        f"dataset '{spec.name}' was not found; searched:\n{searched}",
        hint="get it with " + "; or ".join(ways),
    )
