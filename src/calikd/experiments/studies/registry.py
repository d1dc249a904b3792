"""Registry of studies: ``@register_study("kim2025")`` on a :class:`Study` subclass, one module per study.

A study re-tests a paper's claim with one command (``calikd reproduce NAME --preset P``): a sweep built for a
preset (:meth:`Study.build`) and how our numbers are computed from its results (:meth:`Study.verdict`).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.presets import PRESETS

if TYPE_CHECKING:
    from calikd.experiments.report import SweepResults

# the built-in studies (one module each), in the order `calikd reproduce` names them
BUILT_IN = ("song2021", "kim2025", "mishra2023", "cuk2023", "tian2020")

_S = TypeVar("_S", bound="type[Study]")
_STUDIES: dict[str, Study] = {}


class Study(abc.ABC):
    """A paper's claim, its reported number, the sweep that tests it, and how our number is computed.

    Class attributes: ``paper`` (authors, year, arXiv id), ``claim`` (one or two sentences), ``their_number``
    (what the paper reports), ``presets`` (those :meth:`build` accepts); ``name`` is set on registration.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str]
    claim: ClassVar[str]
    their_number: ClassVar[str]
    presets: ClassVar[tuple[str, ...]] = PRESETS

    @abc.abstractmethod
    def build(self, preset: str) -> dict[str, Any]:
        """The sweep mapping (see :mod:`calikd.experiments.spec`) of this study at ``preset``."""

    @abc.abstractmethod
    def verdict(self, results: SweepResults) -> list[tuple[str, str]]:
        """Our numbers as ``(measurement, value)`` rows from the sweep's results (few or none mid-sweep)."""


def register_study(name: str) -> Callable[[_S], _S]:
    """Class decorator: make a :class:`Study` subclass available as ``calikd reproduce name``."""

    def decorate(cls: _S) -> _S:
        if name in _STUDIES:
            raise ValueError(f"study '{name}' is registered twice")
        cls.name = name
        _STUDIES[name] = cls()
        return cls

    return decorate


def _ensure_loaded() -> None:
    """Import the built-in studies, which register themselves (a registry's own circle)."""
    for module in BUILT_IN:
        importlib.import_module(f"calikd.experiments.studies.{module}")


def _listed_order(name: str) -> tuple[int, str]:
    return (BUILT_IN.index(name) if name in BUILT_IN else len(BUILT_IN), name)


def list_studies() -> list[str]:
    """Names of the registered studies, sorted."""
    _ensure_loaded()
    return sorted(_STUDIES)


def get_study(name: str) -> Study:
    """The study called ``name`` (a clear error with the nearest name otherwise)."""
    _ensure_loaded()
    if name not in _STUDIES:
        raise ConfigError(
            f"unknown reproduction '{name}'{did_you_mean(name, _STUDIES)}",
            hint=f"choose one of: {', '.join(sorted(_STUDIES, key=_listed_order))}",
        )
    return _STUDIES[name]
