"""Registry of distillation methods: ``@register_distiller("kd")`` on a :class:`Distiller` subclass."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from calikd.errors import CalikdDeprecationWarning, ConfigError, did_you_mean
from calikd.utils.config import config_fields, config_from_dict

if TYPE_CHECKING:
    from torch import nn

    from calikd.distill.base import Distiller, DistillerConfig

_D = TypeVar("_D", bound="type[Distiller]")
_METHODS: dict[str, type[Distiller]] = {}
# method options renamed: old spelling -> new one; the old spelling still works (with a deprecation warning)
# for one release. ``temperature`` was the distillation temperature, now ``tau`` (the word "temperature" is
# kept for the teacher's calibration temperature).
RENAMED_OPTIONS = {"temperature": "tau"}


def register_distiller(name: str) -> Callable[[_D], _D]:
    """Class decorator: make a :class:`Distiller` subclass available as ``name``."""

    def decorate(cls: _D) -> _D:
        key = name.lower()
        if key in _METHODS:
            raise ValueError(f"distillation method '{key}' is registered twice")
        if not dataclasses.is_dataclass(cls.config_class):
            raise TypeError(f"{cls.__name__}.config_class must be a dataclass")
        cls.method = key
        _METHODS[key] = cls
        return cls

    return decorate


def _ensure_loaded() -> None:
    import calikd.distill.methods  # noqa: F401  (registers the built-in methods)


def list_distillers() -> list[str]:
    """Names of the registered methods."""
    _ensure_loaded()
    return sorted(_METHODS)


def distiller_class(name: str) -> type[Distiller]:
    """The class registered as ``name`` (a clear error with the nearest name otherwise)."""
    _ensure_loaded()
    key = str(name).lower().replace("-", "_")
    if key not in _METHODS:
        raise ConfigError(
            f"unknown distillation method '{name}'{did_you_mean(key, _METHODS)}",
            hint=f"choose one of: {', '.join(sorted(_METHODS))} (see `calikd methods`)",
        )
    return _METHODS[key]


def renamed_options(
    options: Mapping[str, Any], method: str | None = None, *, warn: bool = True
) -> dict[str, Any]:
    """``options`` with the old spellings of :data:`RENAMED_OPTIONS` replaced by the new ones.

    With ``method``, only options that method has are renamed (so that an old spelling a method never had
    stays an unknown option) and each rename warns (:class:`~calikd.errors.CalikdDeprecationWarning`) unless
    ``warn=False``; giving both spellings is a :class:`~calikd.errors.ConfigError`. Without ``method`` (stored
    options of an older run, to compare with today's) every old spelling is renamed silently.
    """
    out = dict(options)
    fields = config_fields(distiller_class(method).config_class) if method is not None else None
    if fields is not None:
        _refuse_misspelt_old_names(out, fields, method)
    for old, new in RENAMED_OPTIONS.items():
        if old not in out or (fields is not None and (new not in fields or old in fields)):
            continue
        if new in out:
            raise ConfigError(
                f"options of method '{method}' give both '{new}' and '{old}', its old spelling: "
                f"give '{new}' only"
            )
        if method is not None and warn:
            warnings.warn(
                f"method option '{old}' of '{method}' is now called '{new}' ({old}={out[old]!r} -> "
                f"{new}={out[old]!r}); the old spelling will be removed in the next release",
                CalikdDeprecationWarning,
                stacklevel=3,
            )
        out[new] = out.pop(old)
    return out


def _refuse_misspelt_old_names(
    options: Mapping[str, Any], fields: Mapping[str, Any], method: str | None
) -> None:
    """A typo of an old spelling (``temprature``) suggests the new name, not the nearest field."""
    renamed = {old: new for old, new in RENAMED_OPTIONS.items() if new in fields and old not in fields}
    for key in options:
        name = str(key).replace("-", "_")
        if name in fields or name in renamed:
            continue
        for old, new in renamed.items():
            if did_you_mean(name, [*fields, old]) == f" (did you mean '{old}'?)":
                raise ConfigError(
                    f"unknown key '{key}' in options of method '{method}' (did you mean '{new}'? "
                    f"'{old}' is its old spelling)",
                    hint=f"valid keys: {', '.join(sorted(fields))}",
                )


def method_config(name: str, options: Mapping[str, Any] | DistillerConfig | None = None) -> DistillerConfig:
    """The typed config of method ``name`` from a mapping of options (unknown keys are an error; the old
    spellings of renamed options, :data:`RENAMED_OPTIONS`, still work with a deprecation warning)."""
    cls = distiller_class(name)
    if options is None:
        return cls.config_class()
    if isinstance(options, cls.config_class):
        return options
    if dataclasses.is_dataclass(options):
        raise ConfigError(
            f"method '{name}' takes a {cls.config_class.__name__}, got {type(options).__name__}"
        )
    if isinstance(options, Mapping):
        options = renamed_options(options, name)
    return config_from_dict(cls.config_class, options, source=f"options of method '{name}'")


def create_distiller(
    name: str,
    student: nn.Module,
    teacher: nn.Module | None,
    options: Mapping[str, Any] | DistillerConfig | None = None,
    **kwargs: Any,
) -> Distiller:
    """Build method ``name`` around ``student`` and ``teacher`` (keyword arguments go to the class)."""
    cls = distiller_class(name)
    return cls(student, teacher, method_config(name, options), **kwargs)


def distiller_info(name: str) -> dict[str, Any]:
    """Summary of a method: description, whether it uses features, its options with defaults and help."""
    cls = distiller_class(name)
    options = {}
    for field_name, (_, field) in config_fields(cls.config_class).items():
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        options[field_name] = {"default": default, "help": field.metadata.get("help", "")}
    doc = (cls.__doc__ or "").strip().splitlines()
    return {
        "name": cls.method,
        "description": doc[0] if doc else "",
        "source": cls.source,
        "uses_features": cls.uses_features,
        "needs_teacher": cls.needs_teacher,
        "options": options,
        "pair_defaults": [
            {"teacher": t, "student": st, "options": dict(values)}
            for (t, st), values in cls.pair_defaults.items()
        ],
        "pair_source": cls.pair_source,
    }


def pair_options(name: str, teacher_model: str | None, student_model: str) -> dict[str, Any] | None:
    """The authors' option values of method ``name`` for this teacher/student pair (None: not listed)."""
    values = distiller_class(name).pair_defaults.get((teacher_model or "", student_model))
    return None if values is None else renamed_options(values)
