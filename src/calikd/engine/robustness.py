"""Evaluate a checkpoint under corruption: accuracy, NLL, ECE, ACE and Brier per corruption and severity,
their means, and mCE against a baseline checkpoint (``calikd evaluate CKPT --corruptions all``).

The corrupted test sets come from a "-C" folder on disk (calikd's own or a released CIFAR-10-C / -100-C) or
are generated on the fly from the checkpoint's test split with a seed (identical to what ``calikd corrupt``
writes for that seed). A calibrator, fitted on the clean val split, may be applied: the report then shows
how well calibration fitted in-distribution holds under shift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from calikd.calibration.lookup import parse_calibrator_spec, resolve_calibrator
from calikd.corruptions import list_corruptions, resolve_corruptions
from calikd.data.corrupted import SEVERITIES, CorruptedSet, CorruptionSource, GeneratedCorruptions
from calikd.engine.evaluate import EVAL_CALIBRATIONS, EvalModel, LoadOptions, load_for_eval
from calikd.engine.progress import progress_bar
from calikd.errors import DataError
from calikd.metrics import calibration_report
from calikd.metrics.robustness import corruption_errors, mean_corruption_error, per_corruption

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from calikd.calibration.lookup import CalibratorSpec

METRICS = ("accuracy", "nll", "ece", "ace", "brier")


@dataclass
class RobustnessResult:
    """What :func:`evaluate_corruptions` measured, ready for JSON (``to_dict``) and reports."""

    checkpoint: str
    model: str
    dataset: str
    calibrator: str | None
    source: dict[str, Any]
    clean: dict[str, float]
    rows: list[dict[str, Any]]
    baseline: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "model": self.model,
            "dataset": self.dataset,
            "calibrator": self.calibrator,
            "source": self.source,
            "clean": self.clean,
            "rows": self.rows,
            "baseline": self.baseline,
            "summary": self.summary,
        }


def _scalars(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> dict[str, float]:
    report = calibration_report(logits, labels, n_bins=n_bins).scalars()
    return {m: float(report[m]) for m in METRICS}


def _check_labels(
    labels: torch.Tensor, num_classes: int, corrupted_dir: str | os.PathLike[str] | None
) -> None:
    """Labels read from a -C folder must be classes of the checkpoint's model."""
    if corrupted_dir is None or len(labels) == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"'{Path(corrupted_dir) / 'labels.npy'}' holds labels {lo}..{hi}, but the checkpoint has "
            f"{num_classes} classes (0..{num_classes - 1})",
            hint="corrupted sets must be made from the same dataset as the checkpoint",
        )


def _source(
    loaded: EvalModel,
    corruptions: str | list[str],
    corrupted_dir: str | os.PathLike[str] | None,
    seed: int,
    table: str,
) -> CorruptionSource:
    if corrupted_dir is None:
        return GeneratedCorruptions(
            loaded.data.test, resolve_corruptions(corruptions), seed=seed, table=table, device=loaded.device
        )
    folder = CorruptedSet(corrupted_dir)
    wanted = folder.corruptions if corruptions in ("all", ["all"]) else resolve_corruptions(corruptions)
    missing = [c for c in wanted if c not in folder.corruptions]
    if missing:
        raise DataError(
            f"'{corrupted_dir}' has no {', '.join(missing)}",
            hint=f"it holds: {', '.join(folder.corruptions)}",
        )
    folder.corruptions = wanted
    shape = tuple(loaded.data.test.images.shape[1:])
    probe = folder.load(wanted[0], 1)
    if tuple(probe.images.shape[1:]) != shape:
        raise DataError(
            f"'{corrupted_dir}' holds images of shape {tuple(probe.images.shape[1:])} (C, H, W), but the "
            f"checkpoint's test set has {shape}",
            hint="corrupted sets must be made from the same dataset as the checkpoint",
        )
    return folder


def evaluate_corruptions(
    path: str | Path,
    *,
    corruptions: str | list[str] = "all",
    corrupted_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    table: str = "auto",
    baseline: str | Path | None = None,
    calibration: str | Path | CalibratorSpec = "none",
    n_bins: int = 15,
    batch_size: int = 1024,
    show_progress: bool = False,
    **load: Unpack[LoadOptions],
) -> RobustnessResult:
    """Metrics of a checkpoint (and of ``baseline``, for mCE) on every corruption and severity
    (``load``: see :func:`calikd.engine.evaluate.load_for_eval`)."""
    spec = parse_calibrator_spec(calibration, keywords=EVAL_CALIBRATIONS)
    calibrator, calibrator_path = resolve_calibrator(path, spec)
    loaded = load_for_eval(path, **load)
    base = None
    if baseline is not None:
        base = load_for_eval(baseline, **load)
        if base.data.info.name != loaded.data.info.name or len(base.data.test) != len(loaded.data.test):
            raise DataError(
                f"the baseline '{baseline}' was trained on {base.data.info.name}, "
                f"not {loaded.data.info.name}",
                hint="mCE compares models on the same corrupted test set",
            )
    source = _source(loaded, corruptions, corrupted_dir, seed, table)

    def measure(model: EvalModel, data: Any, calibrated: bool) -> dict[str, float]:
        logits, labels = model.predict(data, batch_size=batch_size)
        if calibrated and calibrator is not None:
            logits = calibrator.transform(logits)
        return _scalars(logits, labels, n_bins)

    clean = measure(loaded, loaded.data.test, True)
    base_clean = measure(base, base.data.test, False) if base else None
    rows: list[dict[str, Any]] = []
    base_rows: list[dict[str, Any]] = []
    total = len(source.corruptions) * len(SEVERITIES)
    with progress_bar(total, "corruptions", enabled=show_progress, unit="set") as bar:
        for name in source.corruptions:
            for severity in SEVERITIES:
                data = source.load(name, severity)
                _check_labels(data.labels, int(loaded.meta["num_classes"]), corrupted_dir)
                rows.append({"corruption": name, "severity": severity, **measure(loaded, data, True)})
                if base:
                    base_rows.append({"corruption": name, "severity": severity, **measure(base, data, False)})
                bar.set_postfix_str(name)
                bar.update(1)
    names = source.corruptions
    benchmark = [n for n in list_corruptions("benchmark") if n in names]
    scope = benchmark if len(benchmark) == 15 else names
    means = per_corruption(rows, METRICS)
    summary: dict[str, Any] = {
        "scope": "the 15 benchmark corruptions" if len(benchmark) == 15 else f"{len(scope)} corruptions",
        "per_corruption": means,
        "mean": {m: sum(means[n][m] for n in scope) / len(scope) for m in METRICS},
    }
    summary["mean"]["error"] = 1.0 - summary["mean"]["accuracy"]
    baseline_out = None
    if base is not None and base_clean is not None:
        ces = corruption_errors(rows, 1 - clean["accuracy"], base_rows, 1 - base_clean["accuracy"])
        for name, ce in ces.items():
            summary["per_corruption"][name].update(ce)
        summary.update(mean_corruption_error(ces, scope))
        baseline_out = {
            "checkpoint": str(baseline),
            "model": base.meta["model"]["name"],
            "clean": base_clean,
            "rows": base_rows,
        }
    return RobustnessResult(
        checkpoint=str(path),
        model=loaded.meta["model"]["name"],
        dataset=loaded.data.info.name,
        calibrator=str(calibrator_path) if calibrator_path else None,
        source=source.describe(),
        clean=clean,
        rows=rows,
        baseline=baseline_out,
        summary=summary,
    )
