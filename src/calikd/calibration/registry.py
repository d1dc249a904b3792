"""Calibrator registry: method names -> classes.

Names are matched case-insensitively, with ``-`` read as ``_``. A registered class gets its name as
:attr:`Calibrator.method`, which is also what a saved file's ``"method"`` field holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from calikd.calibration.base import Calibrator
from calikd.errors import ConfigError, did_you_mean

__all__ = ["calibrator_class", "create_calibrator", "list_calibrators", "register_calibrator"]

_T = TypeVar("_T", bound=type[Calibrator])
_REGISTRY: dict[str, type[Calibrator]] = {}


def _normalize(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def register_calibrator(name: str) -> Callable[[_T], _T]:
    """Class decorator: register a :class:`Calibrator` subclass under ``name`` (sets ``cls.method``)."""
    key = _normalize(name)

    def decorator(cls: _T) -> _T:
        if not (isinstance(cls, type) and issubclass(cls, Calibrator)):
            raise TypeError(f"@register_calibrator({name!r}) needs a Calibrator subclass; got {cls!r}")
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"calibrator '{key}' is already registered ({_REGISTRY[key].__name__})")
        cls.method = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def list_calibrators() -> list[str]:
    """Names of the registered calibrators, sorted."""
    return sorted(_REGISTRY)


def calibrator_class(name: str) -> type[Calibrator]:
    """The class registered under ``name``; :class:`ConfigError` listing the valid names otherwise."""
    key = _normalize(name)
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown calibrator '{name}'{did_you_mean(key, _REGISTRY)}; "
            f"valid calibrators: {', '.join(list_calibrators())}"
        )
    return _REGISTRY[key]


def create_calibrator(name: str, **kwargs: Any) -> Calibrator:
    """A new, unfitted calibrator ``name`` built with ``kwargs`` (its hyper-parameters)."""
    cls = calibrator_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"calibrator '{cls.method}' got unknown argument(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    return cls(**kwargs)
