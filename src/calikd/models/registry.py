"""Model registry: names -> factories, presets (aliases) and name patterns such as ``wrn_{depth}_{width}``.

Every factory has the signature ``factory(num_classes: int, in_channels: int = 3, *, kw=default, ...)``;
its keyword arguments (with their defaults) are what :func:`model_info` reports and what
:func:`create_model` accepts. Names are matched case-insensitively, with ``-`` read as ``_``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from calikd.errors import ModelError, did_you_mean
from calikd.models._common import check_int

__all__ = [
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_alias",
    "register_model",
    "register_pattern",
]

Factory = Callable[..., nn.Module]
_POSITIONAL = ("num_classes", "in_channels")


@dataclass(frozen=True)
class _Entry:
    """A registered model: a factory, or a preset of another entry with some keyword arguments fixed."""

    name: str
    family: str
    description: str
    factory: Factory
    kwargs: Mapping[str, Any]  # accepted keyword arguments -> defaults
    fixed: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None


@dataclass(frozen=True)
class _Pattern:
    """A family of names parsed by a regex whose named groups (integers) become fixed kwargs of ``target``."""

    regex: re.Pattern[str]
    target: str
    template: str
    description: str
    validate: Callable[..., None] | None


_ENTRIES: dict[str, _Entry] = {}
_PATTERNS: list[_Pattern] = []


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _keyword_defaults(factory: Factory) -> dict[str, Any]:
    """The factory's keyword arguments (everything but num_classes/in_channels) with their defaults."""
    sig = inspect.signature(factory)
    params = list(sig.parameters.values())
    if [p.name for p in params[:2]] != list(_POSITIONAL):
        raise TypeError(f"model factory {factory!r} must start with (num_classes, in_channels=3, ...)")
    out: dict[str, Any] = {}
    for p in params:
        if p.name in _POSITIONAL:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"model factory {factory!r} may not take *args/**kwargs (kwargs must be listable)"
            )
        if p.default is p.empty:
            raise TypeError(f"model factory {factory!r}: keyword '{p.name}' needs a default")
        out[p.name] = p.default
    return out


def _add(entry: _Entry) -> None:
    old = _ENTRIES.get(entry.name)
    if old is not None and (
        old.base != entry.base
        or getattr(old.factory, "__qualname__", None) != getattr(entry.factory, "__qualname__", None)
    ):
        raise ValueError(f"model name '{entry.name}' is already registered (family {old.family})")
    _ENTRIES[entry.name] = entry


def register_model(name: str, *, family: str, description: str) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(num_classes, in_channels=3, **kwargs)`` under ``name``."""
    key = _normalize(name)

    def decorator(factory: Factory) -> Factory:
        _add(_Entry(key, family, description, factory, _keyword_defaults(factory)))
        return factory

    return decorator


def register_alias(name: str, target: str, *, description: str | None = None, **fixed: Any) -> None:
    """Register ``name`` as ``target`` with the keyword arguments ``fixed`` set (a named size/preset).

    Fixed arguments can no longer be passed to :func:`create_model` under ``name``.
    """
    base = _ENTRIES[_normalize(target)]
    unknown = set(fixed) - set(base.kwargs)
    if unknown:
        raise TypeError(f"alias '{name}': '{target}' takes no argument(s) {sorted(unknown)}")
    fixed = {**base.fixed, **fixed}
    kwargs = {k: v for k, v in base.kwargs.items() if k not in fixed}
    settings = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
    desc = description or f"{base.description} ({settings})"
    _add(_Entry(_normalize(name), base.family, desc, base.factory, kwargs, fixed, base.base or base.name))


def register_pattern(
    pattern: str,
    target: str,
    *,
    template: str,
    description: str,
    validate: Callable[..., None] | None = None,
) -> None:
    """Register a name pattern, e.g. ``r"wrn_(?P<depth>\\d+)_(?P<width>\\d+)"`` -> ``wrn(depth=, width=)``.

    Named groups are parsed as integers; ``validate(**groups)`` may raise :class:`ModelError`.
    ``template`` (e.g. ``"wrn_{depth}_{width}"``) is shown in error messages.
    """
    regex = re.compile(pattern)
    base = _ENTRIES[_normalize(target)]
    if not set(regex.groupindex) <= set(base.kwargs):
        raise TypeError(
            f"pattern {pattern!r}: groups {sorted(regex.groupindex)} are not kwargs of '{target}'"
        )
    _PATTERNS.append(_Pattern(regex, base.name, template, description, validate))


def list_models() -> list[str]:
    """Sorted names of all registered models and presets (pattern families like ``wrn_{d}_{w}`` excepted)."""
    return sorted(_ENTRIES)


def _resolve(name: str) -> _Entry:
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string, got {type(name).__name__}")
    key = _normalize(name)
    if key in _ENTRIES:
        return _ENTRIES[key]
    for pat in _PATTERNS:
        m = pat.regex.fullmatch(key)
        if m is None:
            continue
        groups = {k: int(v) for k, v in m.groupdict().items()}
        if pat.validate is not None:
            pat.validate(**groups)
        base = _ENTRIES[pat.target]
        kwargs = {k: v for k, v in base.kwargs.items() if k not in groups}
        return _Entry(key, base.family, pat.description, base.factory, kwargs, groups, base.name)
    patterns = ", ".join(p.template for p in _PATTERNS)
    raise ModelError(
        f"unknown model '{name}'{did_you_mean(key, _ENTRIES)}",
        hint=f"known models: {', '.join(list_models())}"
        + (f"; also the patterns {patterns}" if patterns else ""),
    )


def model_info(name: str) -> dict[str, Any]:
    """Describe a model name: ``name, family, description, kwargs`` (accepted keyword -> default), and
    for presets/patterns ``base`` (the underlying model) and ``fixed`` (the keyword values the name sets)."""
    e = _resolve(name)
    info: dict[str, Any] = {
        "name": e.name,
        "family": e.family,
        "description": e.description,
        "kwargs": dict(e.kwargs),
    }
    if e.base is not None:
        info["base"] = e.base
        info["fixed"] = dict(e.fixed)
    return info


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; its ``forward(x)`` returns logits ``(B, num_classes)``.

    Raises :class:`ModelError` for an unknown name, an unknown keyword argument or an invalid value.
    """
    entry = _resolve(name)
    check_int("num_classes", num_classes)
    check_int("in_channels", in_channels)
    for key in kwargs:
        if key in entry.kwargs:
            continue
        if key in entry.fixed:
            raise ModelError(
                f"'{entry.name}' fixes {key}={entry.fixed[key]!r}; it cannot be passed",
                hint=f"use '{entry.base}' with {key}=... instead",
            )
        accepted = ", ".join(f"{k}={v!r}" for k, v in entry.kwargs.items()) or "none"
        raise ModelError(
            f"model '{entry.name}' has no argument '{key}'{did_you_mean(key, entry.kwargs)}",
            hint=f"accepted arguments: {accepted}",
        )
    return entry.factory(num_classes, in_channels, **entry.fixed, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
