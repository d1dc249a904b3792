"""Models from outside calikd's zoo: your own model class (``package.module:factory``) and ONNX files.

A checkpoint of model ``"my_pkg.nets:make_net"`` with kwargs ``{"width": 64}`` is rebuilt by importing
``my_pkg.nets`` and calling ``make_net(width=64)``; it must return an ``nn.Module``. Importing runs that
package's code, so calikd does it only when you name it (``--teacher-module``, :func:`use_module`), never
because a checkpoint says so.

:class:`OnnxModel` runs an ONNX file with onnxruntime (optional extra ``calikd[onnx]``) as a frozen
``nn.Module``: a teacher trained in any framework. An ONNX file holds a graph and weights, no code, so it is
safe to load. CPU and CUDA execution providers; logits only (no intermediate features).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calikd.errors import CheckpointError, ConfigError
from calikd.utils.hashing import file_sha256

ONNX = "onnx"  # the model name of an ONNX teacher in a checkpoint's metadata (kwargs: {"file": ...})
LOGITS = "logits"  # a teacher given as its logits (kwargs: num_images, mean, std)
_ALLOWED: dict[str, Callable[..., Any]] = {}  # module specs the user named in this process


def import_factory(spec: str) -> Callable[..., Any]:
    """The callable that ``"package.module:factory"`` names (clear errors for each way it can be wrong)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(
            f"--teacher-module takes 'package.module:factory', got {spec!r}",
            hint="e.g. --teacher-module my_project.models:build_teacher",
        )
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import '{module_name}' for --teacher-module {spec}: {exc}",
            hint="install your package, or run from the folder that holds it (it must be importable)",
        ) from exc
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ConfigError(f"'{module_name}' has no attribute '{attr}' (--teacher-module {spec})")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(f"--teacher-module {spec} is not callable")
    return factory


def is_external(name: str) -> bool:
    """Whether a checkpoint's model name is one of these (``onnx`` or ``package.module:factory``)."""
    return name in (ONNX, LOGITS) or ":" in name


def use_module(spec: str) -> None:
    """Allow checkpoints of the model class ``spec`` (``package.module:factory``) to be rebuilt in this
    process: what ``--teacher-module`` / ``--module`` do. Importing runs the package's code, so it is never
    implicit."""
    _ALLOWED[spec] = import_factory(spec)


def _call(factory: Callable[..., Any], spec: str, num_classes: int, in_channels: int, kwargs: Mapping) -> Any:
    params = inspect.signature(factory).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
             if (open_kwargs or k in params) and k not in kwargs}  # fmt: skip
    try:
        model = factory(**dict(kwargs), **extra)
    except TypeError as exc:
        raise ConfigError(
            f"model class {spec} could not be built with {dict(kwargs)}: {exc}",
            hint="pass its arguments with --module-kwargs key=value ...",
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{spec} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def external_factory(name: str, checkpoint_dir: Path | None = None) -> Callable[..., nn.Module]:
    """A ``factory(name, num_classes=, in_channels=, **kwargs)`` for ``calikd.store.load_model`` that
    builds an ONNX teacher (its file relative to ``checkpoint_dir``) or a model class allowed by
    :func:`use_module`."""

    def build(name: str, *, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
        if name == ONNX:
            file = Path(str(kwargs.get("file", "")))
            if not file.is_absolute() and checkpoint_dir is not None:
                file = checkpoint_dir / file
            return OnnxModel(file, expected_sha256=kwargs.get("sha256"))
        if name == LOGITS:
            return LogitsModel(int(kwargs["num_images"]), num_classes, kwargs["mean"], kwargs["std"])
        if name not in _ALLOWED:
            raise CheckpointError(
                f"the checkpoint holds a model of your own class '{name}', which calikd imports only when "
                "you name it",
                hint=f"pass --teacher-module {name} (distill) or --module {name} (other commands); in Python "
                f"call calikd.models.external.use_module('{name}') first",
            )
        return _call(_ALLOWED[name], name, num_classes, in_channels, kwargs)

    return build


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("an ONNX teacher needs onnxruntime", hint="pip install 'calikd[onnx]'") from None
    return onnxruntime


class OnnxModel(nn.Module):
    """An ONNX classifier as a frozen module: ``(N, C, H, W)`` float32 -> logits ``(N, num_classes)``."""

    eager_only = True  # no channels_last copy or torch.compile: onnxruntime optimises the graph itself

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        super().__init__()
        ort = _runtime()
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX file '{self.path}' does not exist")
        self.sha256 = file_sha256(self.path)
        if expected_sha256 is not None and expected_sha256 != self.sha256:
            raise CheckpointError(
                f"ONNX file '{self.path}' has changed since its checkpoint was written (SHA-256 "
                f"{self.sha256[:12]} instead of {str(expected_sha256)[:12]})",
                hint="import the new file again with `calikd import-teacher`",
            )
        available = ort.get_available_providers()
        wanted = list(providers) if providers else ["CUDAExecutionProvider", "CPUExecutionProvider"]
        use = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), providers=use)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ConfigError(f"cannot load ONNX model '{self.path}': {type(exc).__name__}: {exc}") from exc
        # the file's hash is in the checkpoint's weights: two ONNX teachers never share a checkpoint id
        self.register_buffer("onnx_sha256", torch.tensor(list(bytes.fromhex(self.sha256)), dtype=torch.uint8))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ConfigError(
                f"ONNX model '{self.path}' has {len(inputs)} inputs; a teacher takes one image batch"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.providers = self.session.get_providers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run([self.output_name], {self.input_name: array})[0]
        logits = torch.from_numpy(out).to(x.device)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ConfigError(
                f"ONNX model '{self.path}' returned shape {tuple(logits.shape)} for a batch of {x.shape[0]}; "
                "a teacher must return logits (N, num_classes)"
            )
        return logits

    def __deepcopy__(self, memo: dict) -> OnnxModel:  # the session cannot be copied; the model never changes
        return self

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, providers={self.providers}"


def image_keys(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N, 4) int64 keys of uint8 images (N, C, H, W): the first 32 bytes of each image's SHA-256."""
    rows = images_uint8.reshape(images_uint8.shape[0], -1).contiguous().numpy()
    digests = b"".join(hashlib.sha256(row.tobytes()).digest() for row in rows)
    return torch.frombuffer(bytearray(digests), dtype=torch.int64).reshape(-1, 4).clone()


class LogitsModel(nn.Module):
    """A teacher that exists only as its logits: it recognises each image of its dataset (by the SHA-256 of
    its pixels) and returns the stored logits; an image it was not given (an augmented one) is an error.

    Inputs are normalised images as usual; they are mapped back to uint8 pixels with ``mean``/``std`` (exact:
    rounding recovers the integers) before the lookup. Identical images share logits, as they would for any
    deterministic model.
    """

    eager_only = True

    def __init__(
        self, num_images: int, num_classes: int, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(num_images, 4, dtype=torch.int64))
        self.register_buffer("logits", torch.zeros(num_images, num_classes))
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self._index: dict[tuple[int, ...], int] | None = None

    def fill(self, images_uint8: torch.Tensor, logits: torch.Tensor) -> LogitsModel:
        self.keys.copy_(image_keys(images_uint8))
        self.logits.copy_(logits.float())
        self._index = None
        return self

    def _lookup(self) -> dict[tuple[int, ...], int]:
        if self._index is None:
            self._index = {tuple(k): i for i, k in enumerate(self.keys.tolist())}
        return self._index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float64).view(shape)
        std = torch.tensor(self.std, dtype=torch.float64).view(shape)
        pixels = ((x.detach().cpu().double() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        index = self._lookup()
        rows = []
        for i, key in enumerate(image_keys(pixels).tolist()):
            row = index.get(tuple(key))
            if row is None:
                raise ConfigError(
                    f"a teacher given as logits knows only its dataset's own images; image {i} of this batch "
                    "is not one of them (augmented or resized inputs cannot be looked up)",
                    hint="distil from it without augmentation (--no-augment, no --kd-augment) at full "
                    "resolution",
                )
            rows.append(row)
        return self.logits[torch.tensor(rows, dtype=torch.long)].to(x.device)
