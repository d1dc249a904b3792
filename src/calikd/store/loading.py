"""Rebuild models from checkpoints, with strict key/shape checks and errors that say what does not fit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calikd.errors import CalikdError, CheckpointError
from calikd.models import create_model
from calikd.models.external import external_factory, is_external
from calikd.store.checkpoint import PathLike, read_checkpoint

__all__ = ["describe", "load_model", "load_state_into"]

ModelFactory = Callable[..., nn.Module]
_SHOW = 5  # how many offending keys an error lists


def _first(items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def load_state_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "the state dict"
) -> None:
    """Load ``state_dict`` into ``model``, requiring exactly the model's keys and shapes.

    Raises :class:`CheckpointError` listing (the first few) missing keys, unexpected keys and shape
    mismatches; ``source`` describes the checkpoint in that message (e.g. "checkpoint 'x' (a resnet20 for
    10 classes)"). Dtypes are cast by ``load_state_dict``.
    """
    _check_fits(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def _check_fits(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """:class:`CheckpointError` unless ``state_dict`` has exactly ``model``'s keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} in the checkpoint vs {tuple(expected[k].shape)} in the model"
        for k, v in state_dict.items()
        if isinstance(expected.get(k), torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": shapes}
    problems = [f"{label}: {_first(items)}" for label, items in found.items() if items]
    if problems:
        raise CheckpointError(
            f"{source} does not fit the {type(model).__name__} model built for it; " + "; ".join(problems),
            hint="check that the model name, its arguments and the class count match the checkpoint",
        )


def describe(meta: Mapping[str, Any]) -> str:
    """``"a resnet20 for 10 classes"`` from checkpoint metadata."""
    model = meta.get("model")
    name = (model.get("name") if isinstance(model, dict) else None) or "model of unknown name"
    return f"a {name} for {meta.get('num_classes', 'an unknown number of')} classes"


def _model_spec(meta: Mapping[str, Any], path: PathLike) -> tuple[str, dict[str, Any], int, int]:
    model = meta.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str)):
        raise CheckpointError(
            f"checkpoint '{path}' does not say which model it holds (its metadata has no model.name)",
            hint="read its weights with calikd.store.read_checkpoint and load them into a model you build",
        )
    kwargs = model.get("kwargs") or {}
    n, c = meta.get("num_classes"), meta.get("in_channels")
    ok = isinstance(kwargs, dict) and isinstance(n, int) and isinstance(c, int)
    if not ok or {"num_classes", "in_channels"} & set(kwargs):
        raise CheckpointError(
            f"checkpoint '{path}' has malformed model metadata: it needs integer num_classes and in_channels "
            "and a model.kwargs dict without them"
        )
    return model["name"], kwargs, n, c


def _check_counts(state_dict: Mapping[str, torch.Tensor], args: Mapping[str, Any], source: str) -> None:
    """Model-zoo arguments only: every integer one (classes, channels, width, depth, input size ...) counts
    something the weights hold, so one above the checkpoint's number of weights means damaged metadata, whose
    model could take hours or all memory to build (a depth of 2^63)."""
    total = sum(t.numel() for t in state_dict.values())
    big = [
        f"{k}={v}" for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool) and v > total
    ]
    if big:
        raise CheckpointError(
            f"{source} is damaged: its metadata asks for {', '.join(big)}, more than the {total} weights the "
            "checkpoint holds",
            hint="the metadata (model.kwargs, num_classes, in_channels) does not describe these weights",
        )


def _build(
    factory: ModelFactory,
    name: str,
    n: int,
    c: int,
    kwargs: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    source: str,
) -> nn.Module:
    """``factory(name, ...)``, after a dry run on the meta device (no memory) that checks the checkpoint's
    tensors fit the model: metadata describing a far larger model than the weights hold (a damaged file) is
    refused before gigabytes are allocated. A factory that cannot build on the meta device skips the dry run;
    one that fails to build what the metadata describes is a :class:`CheckpointError`."""
    try:
        with torch.device("meta"):
            skeleton = factory(name, num_classes=n, in_channels=c, **kwargs)
    except CalikdError:
        raise
    except Exception:  # not every factory can build on the meta device: skip the dry run
        skeleton = None
    if isinstance(skeleton, nn.Module):
        _check_fits(skeleton, state_dict, source)
    try:
        return factory(name, num_classes=n, in_channels=c, **kwargs)
    except CalikdError:
        raise
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise CheckpointError(
            f"{source}: the model its metadata describes cannot be built ({type(exc).__name__}: {exc})",
            hint="the metadata (model.name, model.kwargs, num_classes, in_channels) is damaged or was "
            "written by another version of the model code",
        ) from exc


def load_model(
    path: PathLike,
    *,
    expect_num_classes: int | None = None,
    expect_model: str | None = None,
    device: str | torch.device = "cpu",
    factory: ModelFactory | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a checkpoint describes, load its weights strictly, and return ``(model, meta)``.

    The model is built with ``factory(name, num_classes=..., in_channels=..., **kwargs)`` (default
    :func:`calikd.models.create_model`), moved to ``device`` and put in eval mode. ``expect_num_classes`` /
    ``expect_model`` (compared case-insensitively) guard against loading the wrong checkpoint.
    """
    ckpt = read_checkpoint(path)
    meta = ckpt.meta
    name, kwargs, n, c = _model_spec(meta, path)
    what = f"checkpoint '{path}' is {describe(meta)}"
    if expect_model is not None and expect_model.lower() != name.lower():
        raise CheckpointError(f"{what}, but model '{expect_model}' was asked for")
    if expect_num_classes is not None and expect_num_classes != n:
        raise CheckpointError(f"{what}, but {expect_num_classes} classes were asked for")
    source = f"checkpoint '{path}' ({describe(meta)}, {c} input channels)"
    if factory is None and is_external(name):  # an ONNX teacher, or a model class of the user's own
        factory = external_factory(name, Path(ckpt.paths.stem).parent)
    elif factory is None:
        factory = create_model
        _check_counts(ckpt.state_dict, {"num_classes": n, "in_channels": c, **kwargs}, source)
    model = _build(factory, name, n, c, kwargs, ckpt.state_dict, source)
    load_state_into(model, ckpt.state_dict, source=source)
    model.to(device)
    model.eval()
    return model, meta
