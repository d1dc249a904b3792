"""Intermediate features via forward hooks, so model code stays plain (``forward`` returns logits only).

Every calikd model declares ``feature_stage_names``: the ``named_modules()`` keys whose outputs are the
standard knowledge-distillation taps, shallow to deep; the last one is always the pooled embedding
``(B, fc.in_features)`` fed to the final linear layer ``fc``.

>>> with FeatureHooks(model) as hooks:          # doctest: +SKIP
...     logits = model(x)
...     feats = hooks.features                  # {"stem": ..., "layer1": ..., ..., "pool": ...}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from calikd.errors import ModelError, did_you_mean

__all__ = ["FeatureHooks", "feature_stages", "preact_feature_stages"]

# attributes through which wrappers expose the wrapped model: DataParallel/DDP, torch.compile
_WRAPPERS = ("module", "_orig_mod")


def feature_stages(model: nn.Module) -> tuple[str, ...]:
    """Names (``model.named_modules()`` keys) of the model's standard feature taps, in forward order.

    Works through ``DataParallel``/``DistributedDataParallel`` and ``torch.compile`` wrappers (names are then
    prefixed with ``module.`` or ``_orig_mod.``). Raises :class:`ModelError` if the model declares none.
    """
    names = getattr(model, "feature_stage_names", None)
    if names is not None:
        return tuple(names)
    for attr in _WRAPPERS:
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return tuple(f"{attr}.{n}" for n in feature_stages(inner))
    raise ModelError(
        f"{type(model).__name__} declares no feature_stage_names",
        hint="pass the module names to hook explicitly, e.g. FeatureHooks(model, ['layer1', 'layer2'])",
    )


def preact_feature_stages(model: nn.Module) -> tuple[str, ...]:
    """The pre-ReLU counterparts of :func:`feature_stages` (``preact_stage_names``), in forward order.

    Models declare them whatever their ``preact_features`` flag (which only picks the *standard* taps), so
    methods that need pre-activation features (AB, OFD) hook them on an already-built model, e.g. a teacher
    loaded from a checkpoint. The last entry is the pooled embedding, as in :func:`feature_stages`.
    """
    names = getattr(model, "preact_stage_names", None)
    if names is not None:
        return tuple(names)
    for attr in _WRAPPERS:
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return tuple(f"{attr}.{n}" for n in preact_feature_stages(inner))
    raise ModelError(
        f"{type(model).__name__} declares no pre-ReLU feature taps (preact_stage_names)",
        hint="name the pre-ReLU modules explicitly with student_layers / teacher_layers",
    )


class FeatureHooks:
    """Capture the outputs of named submodules on every forward pass.

    ``features`` maps each name to the module's latest output (a fresh dict at each forward of ``model``;
    a module called several times in one forward keeps its last output). With ``detach=True`` outputs are
    detached from the autograd graph. Hooks are removed on ``__exit__`` or by :meth:`remove`; the last
    ``features`` stay readable afterwards.
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None, *, detach: bool = False) -> None:
        if names is None:
            names = feature_stages(model)
        elif isinstance(names, str):
            names = (names,)
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.detach = detach
        self.features: dict[str, Any] = {}
        modules = dict(model.named_modules())
        unknown = [n for n in self.names if n not in modules]
        if unknown:
            raise ModelError(self._unknown_message(model, unknown, modules), hint=self._hint(model))
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(self._on_model_forward)]
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))

    @staticmethod
    def _unknown_message(model: nn.Module, unknown: list[str], modules: dict[str, nn.Module]) -> str:
        first = unknown[0]
        names = ", ".join(repr(n) for n in unknown)
        return (
            f"{type(model).__name__} has no submodule {names}{did_you_mean(first, [n for n in modules if n])}"
        )

    @staticmethod
    def _hint(model: nn.Module) -> str:
        try:
            stages = ", ".join(feature_stages(model))
        except ModelError:
            stages = "(none declared)"
        top = ", ".join(name for name, _ in model.named_children())
        return (
            f"valid names are keys of model.named_modules(); feature stages: {stages}; "
            f"top-level modules: {top}"
        )

    def _on_model_forward(self, module: nn.Module, args: Any) -> None:
        self.features = {}

    def _make_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.detach:
                output = _detach(output)
            self.features[name] = output

        return hook

    def clear(self) -> None:
        """Forget the captured features."""
        self.features = {}

    def remove(self) -> None:
        """Remove all hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


def _detach(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, (tuple, list)):
        return type(output)(_detach(o) for o in output)
    return output
