"""Bring your own teacher: an ONNX file, or weights of your own model class, made a calikd checkpoint.

``import_teacher`` checks the model on the dataset it will teach on (output shape, finite logits, val and test
accuracy with the preprocessing you state) and writes ``<out>/last.safetensors`` + ``.json``, whose metadata
records that preprocessing. From then on it is a teacher like any other: ``calikd evaluate``, ``calibrate``,
``rank-teachers`` and ``distill`` read it, and always feed it its own normalisation.

- ``source`` an ``.onnx`` file: copied next to the checkpoint and run with onnxruntime (``calikd[onnx]``).
- ``source`` a ``.safetensors`` state dict (or an ``nn.Module``) with ``module="package.module:factory"``:
  ``factory(**module_kwargs)`` builds the model (given ``num_classes``/``in_channels`` when it takes them) and
  the weights load strictly. Later commands rebuild it only when you name the module again
  (``--teacher-module`` / ``--module``): importing runs your package's code. Pickled files are refused.
- ``source`` a ``.npz`` / ``.safetensors`` file of logits (``train_logits``, ``test_logits``
  [, ``val_logits``]), each ``(N, num_classes)`` in the order of calikd's splits of ``dataset``, optionally
  with ``fingerprint_<split>`` = ``load_dataset(...).<split>.fingerprint()`` to prove the order: a
  teacher that exists only as its predictions. It recognises each image of the dataset by its pixels, so
  calibration, metrics, reports and the logit cache work with it; it cannot teach on augmented images.
- ``mean``/``std``: the normalisation the model was trained with, one value per channel in [0, 1] pixel units
  (``mean=0, std=1`` for a model fed raw [0, 1] pixels, e.g. one exported by ``calikd export``). They are
  required: calikd never assumes the dataset's statistics for a model trained elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import calikd
from calikd.data import EvalTransform, load_dataset
from calikd.data.arrays import load_array_file
from calikd.engine.evaluate import predict_logits
from calikd.errors import CheckpointError, ConfigError
from calikd.metrics import accuracy
from calikd.models.external import LOGITS, ONNX, LogitsModel, OnnxModel, external_factory, use_module
from calikd.store import checkpoint_preprocessing, load_state_into, per_channel, save_checkpoint
from calikd.utils.device import resolve_device, resolve_precision

ONNX_FILE = "teacher.onnx"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


@dataclass(frozen=True)
class ImportedTeacher:
    """What :func:`import_teacher` wrote and measured."""

    checkpoint: Path
    meta: dict[str, Any]
    val_accuracy: float | None
    test_accuracy: float

    def line(self) -> str:
        val = "" if self.val_accuracy is None else f"val accuracy {self.val_accuracy:.4f}, "
        return f"teacher checkpoint {self.checkpoint} ({val}test accuracy {self.test_accuracy:.4f})"


def _stats(values: float | Sequence[float] | None, channels: int, what: str) -> list[float]:
    if values is None:
        raise ConfigError(
            f"import_teacher needs the {what} the model was trained with (--{what})",
            hint="one value per channel in [0, 1] units; mean 0 and std 1 for a model fed raw [0, 1] pixels",
        )
    if not isinstance(values, (int, float)) and len(values) == 1:
        values = values[0]  # --mean 0.5 on a colour dataset: every channel
    return per_channel(values, channels)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"'{path}' is a pickle-based file, which calikd never loads (unpickling can run any code)",
            hint="save the weights with safetensors: "
            "safetensors.torch.save_file(model.state_dict(), 'w.safetensors')",
        )
    if path.suffix != ".safetensors":
        raise ConfigError(f"'{path}': weights must be a .safetensors file (or give an .onnx model)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights '{path}': {exc}") from exc


def is_logits_file(path: Path) -> bool:
    """An ``.npz`` file, or a ``.safetensors`` file holding ``test_logits``."""
    if path.suffix == ".npz":
        return True
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            return "test_logits" in fh.keys()  # noqa: SIM118
    except (SafetensorError, OSError):
        return False


def _logits_teacher(path: Path, data: Any, normalization: dict[str, list[float]]) -> LogitsModel:
    arrays, meta = load_array_file(path)
    num_classes = data.info.num_classes
    images, logits = [], []
    for split in ("train", "val", "test"):
        key = f"{split}_logits"
        if key not in arrays:
            if split == "val" and len(data.val) == 0:
                continue
            raise ConfigError(
                f"'{path}' has no {key}; a teacher given as logits needs them for every split of "
                f"'{data.info.name}' (train {len(data.train)}, val {len(data.val)}, test {len(data.test)})",
                hint="run your model over load_dataset(...).train/.val/.test images, in order",
            )
        values = torch.as_tensor(arrays[key]).float()
        want = len(data.split(split))
        if values.ndim != 2 or values.shape != (want, num_classes):
            raise ConfigError(
                f"'{path}': {key} has shape {tuple(values.shape)}; calikd's {split} split of "
                f"'{data.info.name}' needs ({want}, {num_classes})",
                hint="the split sizes depend on --val-fraction and --split-seed: use the same as when you "
                "computed the logits",
            )
        if not bool(torch.isfinite(values).all()):
            raise ConfigError(f"'{path}': {key} holds NaN or infinite values")
        recorded = arrays.get(f"fingerprint_{split}", meta.get(f"fingerprint_{split}"))
        if recorded is not None and str(recorded) != data.split(split).fingerprint():
            raise ConfigError(
                f"'{path}': the {split} logits were computed on other images or another order than calikd's "
                f"{split} split of '{data.info.name}' (fingerprints differ)",
                hint="use the same dataset, --val-fraction, --split-seed and dataset options",
            )
        images.append(data.split(split).images)
        logits.append(values)
    all_images = torch.cat(images)
    model = LogitsModel(len(all_images), num_classes, normalization["mean"], normalization["std"])
    return model.fill(all_images, torch.cat(logits))


def _build(
    source: str | os.PathLike[str] | nn.Module,
    out: Path,
    module: str | None,
    module_kwargs: Mapping[str, Any],
    num_classes: int,
    in_channels: int,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model, its metadata 'model' entry, its 'source' entry)."""
    if isinstance(source, nn.Module):
        if module is None:
            raise ConfigError(
                "importing an nn.Module needs module='package.module:factory', so that the checkpoint can "
                "be rebuilt",
                hint="the factory returns your model class (with module_kwargs as its arguments)",
            )
        use_module(module)
        model = external_factory(module)(
            module, num_classes=num_classes, in_channels=in_channels, **module_kwargs
        )
        load_state_into(model, source.state_dict(), source="the given module")
        return model, {"name": module, "kwargs": dict(module_kwargs)}, {"kind": "module", "module": module}
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"teacher file '{path}' does not exist")
    if path.suffix == ".onnx":
        if module is not None:
            raise ConfigError("--module applies to weights files, not to an .onnx model")
        out.mkdir(parents=True, exist_ok=True)
        copied = out / ONNX_FILE
        if path.resolve() != copied.resolve():
            shutil.copyfile(path, copied)
        model = OnnxModel(copied)
        entry = {"name": ONNX, "kwargs": {"file": ONNX_FILE, "sha256": model.sha256}}
        return model, entry, {"kind": "onnx", "file": str(path)}
    if module is None:
        raise ConfigError(
            f"'{path}' holds weights only: name the model class that takes them",
            hint="--module package.module:factory [--module-kwargs key=value ...]",
        )
    weights = _weights(path)  # refuses pickles before any code of the module runs
    use_module(module)
    model = external_factory(module)(
        module, num_classes=num_classes, in_channels=in_channels, **module_kwargs
    )
    load_state_into(model, weights, source=f"weights '{path}'")
    return model, {"name": module, "kwargs": dict(module_kwargs)}, {"kind": "module", "file": str(path)}


def import_teacher(
    source: str | os.PathLike[str] | nn.Module,
    out: str | os.PathLike[str],
    *,
    dataset: str,
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
    data_dir: str | os.PathLike[str] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    module: str | None = None,
    module_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    device: str = "auto",
) -> ImportedTeacher:
    """Make ``source`` a calikd teacher checkpoint in ``out`` (see the module docstring)."""
    out = Path(out)
    if (out / "last.json").exists() and not overwrite:
        raise ConfigError(f"'{out}' already holds a checkpoint", hint="pass --overwrite to replace it")
    options = dict(dataset_options or {})
    data = load_dataset(dataset, data_dir, val_fraction=val_fraction, split_seed=split_seed, **options)
    info = data.info
    logits_file = not isinstance(source, nn.Module) and is_logits_file(Path(source))
    if logits_file and mean is None and std is None:  # its "preprocessing" only maps images to pixels
        normalization = {"mean": [0.0] * info.in_channels, "std": [1.0] * info.in_channels}
    else:
        normalization = {
            "mean": _stats(mean, info.in_channels, "mean"),
            "std": _stats(std, info.in_channels, "std"),
        }
    if logits_file:
        model = _logits_teacher(Path(source), data, normalization)
        model_entry = {"name": LOGITS, "kwargs": {"num_images": int(model.keys.shape[0]), **normalization}}
        source_entry = {"kind": "logits", "file": str(source)}
    else:
        model, model_entry, source_entry = _build(
            source, out, module, dict(module_kwargs or {}), info.num_classes, info.in_channels
        )
    meta: dict[str, Any] = {
        "role": "teacher",
        "model": model_entry,
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": list(info.image_size),
        "normalization": normalization,
        "dataset": {
            **info.to_dict(),
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": options,
            **({"data_dir": str(Path(data_dir).resolve())} if data_dir is not None else {}),
        },
        "source": source_entry,
        "calikd_version": calikd.__version__,
    }
    pre = checkpoint_preprocessing(meta, str(out))  # checks the statistics like any checkpoint's
    dev = resolve_device(device)
    model.to(dev).eval().requires_grad_(False)
    transform = EvalTransform(pre.mean, pre.std)
    with torch.no_grad():
        probe = model(transform(data.test.images[:4]).to(dev))
    if not isinstance(probe, torch.Tensor) or probe.shape != (min(4, len(data.test)), info.num_classes):
        raise ConfigError(
            f"the model returns {tuple(getattr(probe, 'shape', ()))} for 4 images; a teacher for dataset "
            f"'{info.name}' must return logits (N, {info.num_classes})"
        )
    if not bool(torch.isfinite(probe).all()):
        raise ConfigError("the model returns NaN or infinite logits on the dataset's images")
    precision = resolve_precision("fp32", dev)
    scores: dict[str, float] = {}
    for split in ("val", "test"):
        if len(data.split(split)):
            logits, labels = predict_logits(
                model, data.split(split), transform, device=dev, precision=precision, batch_size=512
            )
            scores[split] = float(accuracy(logits, labels))
    meta["metrics"] = {f"{k}_accuracy": v for k, v in scores.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "last", model.cpu(), meta)
    return ImportedTeacher(out / "last", meta, scores.get("val"), scores["test"])
