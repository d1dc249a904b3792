"""Registry of dataset builders: each dataset module registers itself with :func:`register_dataset`.

A builder is ``builder(ctx: BuildContext, **options) -> RawDataset``; its keyword-only parameters are the
dataset's options (``load_dataset(name, **options)``), so unknown options are found from its signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calikd.data.dataset import ArrayDataset
from calikd.data.info import DatasetInfo
from calikd.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Resource:
    """One file to download for a dataset.

    ``sha256`` is the hash of the file as served; ``content_sha256`` that of its decompressed content (gzip
    files only; it wins when known, so that recompressed copies still verify). ``extract`` marks an archive to
    unpack into the dataset folder.
    """

    filename: str
    sha256: str | None
    content_sha256: str | None = None
    extract: bool = False
    size: int | None = None  # bytes, for messages only


@dataclass
class BuildContext:
    """What a builder gets besides its options."""

    spec: DatasetSpec
    data_dir: Path | None
    download: bool
    split_seed: int = 0  # for builders that carve a split themselves (a flat image folder's test split)


@dataclass
class RawDataset:
    """What a builder returns: the official splits; ``val`` only where the files define our val split."""

    info: DatasetInfo
    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None = None


Builder = Callable[..., RawDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: builder, static info and where its files live and come from."""

    name: str
    builder: Builder
    info: DatasetInfo | None  # None where the info depends on the files or options (imagefolder, synthetic)
    aliases: tuple[str, ...] = ()
    folder: str = ""  # sub-folder under a data root; defaults to ``name``
    urls: tuple[str, ...] = ()  # official base URLs, tried in order; a resource's URL is base + filename
    resources: tuple[Resource, ...] = ()
    find: Callable[[Path], Path | None] | None = None  # candidate folder -> dataset root inside it, or None
    system_dirs: tuple[Path, ...] = ()
    install_hints: tuple[str, ...] = ()
    needs_files: bool = True
    description: str = ""

    @property
    def folder_name(self) -> str:
        return self.folder or self.name

    @property
    def downloadable(self) -> bool:
        return bool(self.urls and self.resources)

    def option_names(self) -> list[str]:
        params = list(inspect.signature(self.builder).parameters.values())[1:]
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def option_defaults(self) -> dict[str, Any]:
        params = list(inspect.signature(self.builder).parameters.values())[1:]
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


_SPECS: dict[str, DatasetSpec] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register_dataset(
    name: str,
    *,
    info: DatasetInfo | None = None,
    aliases: tuple[str, ...] = (),
    replace: bool = False,
    **spec_fields: Any,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (and ``aliases``); returns the builder unchanged."""

    def decorate(builder: Builder) -> Builder:
        spec = DatasetSpec(name=name, builder=builder, info=info, aliases=tuple(aliases), **spec_fields)
        add_spec(spec, replace=replace)
        return builder

    return decorate


def add_spec(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Register a ready-made spec (what :func:`register_dataset` does); ``replace`` allows re-registration."""
    keys = [_key(spec.name), *(_key(a) for a in spec.aliases)]
    for key in keys:
        owner = _ALIASES.get(key)
        if owner is not None and not (replace and owner == spec.name):
            raise ConfigError(f"dataset name '{key}' is already registered (by '{owner}')")
    _SPECS[spec.name] = spec
    for key in keys:
        _ALIASES[key] = spec.name
    return spec


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (tests use this to clean up specs they added)."""
    spec = _SPECS.pop(resolve_name(name))
    for key in [k for k, owner in _ALIASES.items() if owner == spec.name]:
        del _ALIASES[key]


def resolve_name(name: str) -> str:
    """Canonical name for ``name`` or an alias; unknown names are a :class:`ConfigError`."""
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__}")
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise ConfigError(
            f"unknown dataset '{name}'{did_you_mean(_key(name), _ALIASES)}",
            hint=f"available datasets: {', '.join(list_datasets())}",
        )
    return canonical


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered under ``name`` (or an alias of it)."""
    return _SPECS[resolve_name(name)]


def list_datasets() -> list[str]:
    """Canonical names of all registered datasets, sorted."""
    return sorted(_SPECS)


def check_options(spec: DatasetSpec, options: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` naming the first option ``spec``'s builder does not take."""
    valid = spec.option_names()
    for key in options:
        if key not in valid:
            listing = ", ".join(valid) if valid else "none"
            raise ConfigError(
                f"dataset '{spec.name}' has no option '{key}'{did_you_mean(key, valid)}",
                hint=f"its options: {listing}",
            )
