"""Run a model over a dataset split and collect its logits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn

from calikd.calibration.lookup import parse_calibrator_spec, resolve_calibrator
from calikd.data import ArrayDataset, BatchLoader, EvalTransform, load_dataset
from calikd.data.resolution import ResolutionTransform
from calikd.engine.distributed import Distributed
from calikd.engine.progress import progress_bar
from calikd.errors import CheckpointError, ConfigError
from calikd.metrics import calibration_report, looks_like_probabilities
from calikd.store import checkpoint_dataset, checkpoint_preprocessing, load_model
from calikd.utils.device import Precision, resolve_device, resolve_precision

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from calikd.calibration.lookup import CalibratorSpec


class LoadOptions(TypedDict, total=False):
    """Where a checkpoint's data comes from and where it runs: :func:`load_for_eval`'s keyword arguments."""

    data_dir: str | Path | None
    download: bool
    device: str
    precision: str


class RunOptions(LoadOptions, total=False):
    """How a checkpoint is run over its data (:func:`checkpoint_logits`): the keyword arguments that
    evaluation, calibration and teacher ranking share and pass on."""

    batch_size: int
    show_progress: bool


#: What ``calibration=`` of evaluation takes besides a path (any other word is a path).
EVAL_CALIBRATIONS = ("none", "auto")


@torch.no_grad()  # not inference_mode: the logits may feed autograd later (calibrator fits)
def predict_logits(
    model: nn.Module,
    dataset: ArrayDataset,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    precision: Precision,
    batch_size: int = 1024,
    show_progress: bool = False,
    desc: str = "eval",
    runtime: Distributed | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, C)`` (float32, CPU) and labels ``(N,)`` in dataset order, with ``model`` in eval mode.

    Under data-parallel training (``runtime``) every rank runs a contiguous shard and the shards are gathered,
    so every rank returns the logits of the whole dataset.
    """
    if runtime is not None and runtime.enabled:
        if len(dataset) < runtime.world_size:
            raise ConfigError(f"{len(dataset)} samples cannot be shared by {runtime.world_size} processes")
        lo, hi = runtime.shard(len(dataset))
        logits, labels = predict_logits(
            model,
            dataset.subset(torch.arange(lo, hi)),
            transform,
            device=device,
            precision=precision,
            batch_size=batch_size,
            show_progress=show_progress and runtime.is_main,
            desc=desc,
        )
        return runtime.gather_rows(logits), runtime.gather_rows(labels)
    was_training = model.training
    model.eval()
    loader = BatchLoader(dataset, batch_size, shuffle=False, device=device)
    outputs, labels = [], []
    with progress_bar(len(dataset), desc, enabled=show_progress) as bar:
        for images, targets in loader:
            x = transform(images)
            if precision.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                logits = model(x)
            outputs.append(logits.float().cpu())
            labels.append(targets.cpu())
            bar.update(len(targets))
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def _then(
    first: Callable[[torch.Tensor], torch.Tensor], second: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: second(first(x))


@dataclasses.dataclass
class CheckpointOutputs:
    """Logits of a checkpoint on some splits of a dataset, with the checkpoint's metadata."""

    meta: dict[str, Any]
    dataset: str
    logits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # split -> (logits (N, C), labels (N,))


@dataclasses.dataclass
class EvalModel:
    """A checkpoint loaded for evaluation: the model on its device, its metadata, its dataset's splits and
    the eval transform it was trained with (including a cross-resolution student's input resolution)."""

    model: nn.Module
    meta: dict[str, Any]
    data: Any  # DatasetSplits
    transform: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    precision: Precision

    def predict(
        self, dataset: Any, *, batch_size: int = 1024, show_progress: bool = False, desc: str = "eval"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of ``dataset`` (an :class:`ArrayDataset` shaped like the checkpoint's data)."""
        return predict_logits(
            self.model,
            dataset,
            self.transform,
            device=self.device,
            precision=self.precision,
            batch_size=batch_size,
            show_progress=show_progress,
            desc=desc,
        )


def load_for_eval(
    path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> EvalModel:
    """Load a checkpoint and its own (or another, same-shaped) dataset for evaluation.

    The checkpoint's own normalization, validation fraction, split seed and dataset options are used, so
    ``"val"`` is the very split its training held out; a cross-resolution student gets its input resolution.
    """
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model, meta = load_model(path)
    pre = checkpoint_preprocessing(meta, str(path))  # the model's own input, never the dataset's statistics
    ds_meta = checkpoint_dataset(meta, str(path))
    name = dataset or ds_meta.get("name")
    if not name:
        raise CheckpointError(
            f"checkpoint '{path}' does not record its dataset",
            hint="pass the dataset (--dataset on the command line, dataset= in Python), or add "
            '"dataset": {"name": ...} to its .json metadata',
        )
    own = name == ds_meta.get("name")
    data = load_dataset(
        name,
        data_dir if data_dir is not None else (ds_meta.get("data_dir") if own else None),
        val_fraction=ds_meta.get("val_fraction", 0.1),
        split_seed=ds_meta.get("split_seed", 0),
        download=download,
        **(ds_meta.get("options", {}) if own else {}),
    )
    if data.info.num_classes != meta["num_classes"] or data.info.in_channels != pre.in_channels:
        raise CheckpointError(
            f"checkpoint '{path}' is for {meta['num_classes']} classes and {pre.in_channels} channels, "
            f"but dataset '{name}' has {data.info.num_classes} classes and {data.info.in_channels} channels"
        )
    model.to(dev)
    if prec.channels_last:
        model.to(memory_format=torch.channels_last)
    transform = EvalTransform(pre.mean, pre.std)
    if meta.get("input_resolution"):  # a cross-resolution student sees low-resolution images
        transform = _then(transform, ResolutionTransform.from_dict(meta["input_resolution"]))
    return EvalModel(model, meta, data, transform, dev, prec)


def _check_outputs(logits: torch.Tensor, path: str | Path, split: str) -> None:
    """Refuse outputs that are not usable logits: NaN/inf, or softmax probabilities."""

    bad = int((~torch.isfinite(logits)).any(dim=1).sum()) if logits.numel() else 0
    if bad:
        raise CheckpointError(
            f"checkpoint '{path}' gives NaN or inf logits for {bad} of the {len(logits)} {split} samples",
            hint="its weights hold NaN or inf (did its training diverge?): retrain it, or use another one",
        )
    if looks_like_probabilities(logits):
        raise CheckpointError(
            f"checkpoint '{path}' outputs probabilities (every {split} row lies in [0, 1] and sums to 1), "
            "not logits",
            hint="calikd expects models whose last layer gives logits: remove the softmax from the model",
        )


def checkpoint_logits(
    path: str | Path,
    splits: Sequence[str] = ("test",),
    *,
    dataset: str | None = None,
    batch_size: int = 1024,
    show_progress: bool = False,
    **load: Unpack[LoadOptions],
) -> CheckpointOutputs:
    """Run a checkpoint over ``splits`` of its own (or another, same-shaped) dataset (see
    :func:`load_for_eval`, which takes ``load``)."""
    loaded = load_for_eval(path, dataset=dataset, **load)
    outputs = {
        split: loaded.predict(
            loaded.data.split(split), batch_size=batch_size, show_progress=show_progress, desc=split
        )
        for split in splits
    }
    for split, (logits, _) in outputs.items():
        _check_outputs(logits, path, split)
    return CheckpointOutputs(meta=loaded.meta, dataset=loaded.data.info.name, logits=outputs)


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: str | None = None,
    split: str = "test",
    calibration: str | Path | CalibratorSpec = "none",
    n_bins: int = 15,
    **run: Unpack[RunOptions],
) -> dict[str, Any]:
    """The full metrics suite of a checkpoint on one split (see :func:`checkpoint_logits`, which takes
    ``run``).

    ``calibration``: ``"none"`` (raw logits), ``"auto"`` (the calibrator stored next to the checkpoint by
    ``calikd calibrate``; an error if there is none) or the path of a calibrator file.
    """

    spec = parse_calibrator_spec(calibration, keywords=EVAL_CALIBRATIONS)
    calibrator, calibrator_path = resolve_calibrator(path, spec)
    out = checkpoint_logits(path, (split,), dataset=dataset, **run)
    logits, labels = out.logits[split]
    if calibrator is not None:
        logits = calibrator.transform(logits)
    report = calibration_report(logits, labels, n_bins=n_bins)
    return {
        "checkpoint": str(path),
        "model": out.meta["model"]["name"],
        "dataset": out.dataset,
        "split": split,
        "calibrator": str(calibrator_path) if calibrator_path else None,
        "num_samples": len(labels),
        "metrics": report.scalars(),
        "reliability": report.reliability.to_dict(),
    }
