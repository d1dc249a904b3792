"""Typed dataclass configs shared by YAML files and CLI flags.

A config is a dataclass whose fields are declared with :func:`option` (default, help, choices, bounds).
The same field names are valid YAML keys (``snake_case``) and CLI flags (``--kebab-case``). Unknown keys,
wrong types, NaN or infinite numbers (anywhere, also inside mappings such as ``method_options``) and
out-of-range numbers raise :class:`~calikd.errors.ConfigError` naming the key (and the nearest valid one).
Precedence: dataclass defaults < ``--config FILE.yaml`` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from calikd.errors import ConfigError, did_you_mean

T = TypeVar("T")


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    exclusive_min: bool = False,
) -> Any:
    """Declare a config field with its help text, allowed choices and numeric bounds."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "exclusive_min": exclusive_min}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (an int is a valid float); errors name ``key``."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' must not be empty (null)")
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(base) or (Any,)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict or base is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping; got {value!r}")
        return {k: _free_value(f"{key}.{k}", v) for k, v in value.items()}
    if base is Any:
        return _free_value(key, value)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number; got {value!r}")
        return _finite(key, value)
    if base is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"config key '{key}' must be an integer; got {value!r}")
        return int(value)
    if base is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"config key '{key}' must be a string; got {value!r}")
        return str(value)
    return value


def _finite(key: str, value: float) -> float:
    """``value`` as a float if it is finite: NaN or inf in an option would only surface later, as invalid
    JSON or as "training diverged" after a wasted epoch."""
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(
            f"config key '{key}' must be a finite number; got {value!r}",
            hint="NaN and infinity are not valid settings",
        )
    return number


def _free_value(key: str, value: Any) -> Any:
    """A value of a free-form option (a mapping such as ``method_options``): floats inside must be finite."""
    if isinstance(value, float):
        _finite(key, value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _free_value(f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _free_value(f"{key}[{i}]", v)
    return value


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value is not None and value not in choices:
        raise ConfigError(
            f"config key '{key}' has invalid value {value!r}{did_you_mean(str(value), map(str, choices))}; "
            f"choose one of: {', '.join(map(str, choices))}"
        )
    lo, hi = meta.get("min"), meta.get("max")
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            continue
        if lo is not None and (number < lo or (meta.get("exclusive_min") and number == lo)):
            relation = ">" if meta.get("exclusive_min") else ">="
            raise ConfigError(f"config key '{key}' must be {relation} {lo}; got {number}")
        if hi is not None and number > hi:
            raise ConfigError(f"config key '{key}' must be <= {hi}; got {number}")


def config_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    """Map each field name of the dataclass ``cls`` to ``(type annotation, field)``."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build ``cls`` from a mapping, rejecting unknown keys and checking types and bounds."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must be a mapping of keys to values; got {type(data).__name__}")
    fields = config_fields(cls)
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ConfigError(
                f"unknown key '{key}' in {source}{did_you_mean(name, fields)}",
                hint=f"valid keys: {', '.join(sorted(fields))}",
            )
        tp, field = fields[name]
        values[name] = _coerce(name, value, tp)
        _check_bounds(name, values[name], field.metadata)
    instance = cls(**values)
    for name, (_, field) in fields.items():
        if name not in values:
            _check_bounds(name, getattr(instance, name), field.metadata)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (safe loader) that must hold a mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}' must hold a mapping of keys to values, not {type(data).__name__}"
        )
    return data


def parse_key_value(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, YAML-parsed value)`` (an argparse ``type``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    return key, yaml.safe_load(raw) if raw else ""


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--kebab-case`` flag per field of ``cls``; unset flags stay absent (``argparse.SUPPRESS``)."""
    for name, (tp, field) in config_fields(cls).items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        base, _ = _unwrap_optional(tp)
        meta = field.metadata
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"{meta.get('help', '')} (default: {default})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        origin = typing.get_origin(base)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin in (list, tuple):
            (item_tp, *_) = typing.get_args(base) or (str,)
            parser.add_argument(flag, nargs="*", type=item_tp, metavar=name.upper(), **kwargs)
        elif origin is dict or base is dict:
            parser.add_argument(flag, nargs="*", type=parse_key_value, metavar="KEY=VALUE", **kwargs)
        else:
            choices = meta.get("choices")
            parser.add_argument(
                flag, type=base, choices=choices, metavar=None if choices else name.upper(), **kwargs
            )


def config_from_args(cls: type[T], args: argparse.Namespace, *, config_file: str | None = None) -> T:
    """Merge defaults, the YAML file ``config_file`` (if any) and the flags present in ``args``."""
    data: dict[str, Any] = load_config_file(config_file) if config_file else {}
    source = f"config file '{config_file}'" if config_file else "command-line options"
    if config_file:
        config_from_dict(cls, data, source=source)  # report unknown keys against the file itself
    fields = config_fields(cls)
    for name, (tp, _) in fields.items():
        if hasattr(args, name):
            value = getattr(args, name)
            base, _ = _unwrap_optional(tp)
            if (typing.get_origin(base) is dict or base is dict) and isinstance(value, list):
                value = dict(value)
            data[name] = value
    return config_from_dict(cls, data, source=source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return dataclasses.asdict(config)
