"""Load a teacher checkpoint for distillation: frozen weights, its calibrator, its numbers before and after.

``calibration``:
- ``"none"``: raw logits;
- ``"auto"``: the primary calibrator stored next to the checkpoint by ``calikd calibrate``, raw logits when
  there is none (the outcome is recorded in the report);
- ``"temperature"``: the stored temperature calibrator, or else temperature scaling fitted now on the
  teacher's held-out val split (never on test);
- a path to a calibrator file.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calikd.calibration import CalibrationOnTestWarning, Calibrator, TemperatureScaling
from calikd.calibration.lookup import CalibratorSpec, parse_calibrator_spec, resolve_calibrator
from calikd.data import ArrayDataset
from calikd.engine.distributed import Distributed
from calikd.engine.evaluate import predict_logits
from calikd.errors import CheckpointError, ConfigError
from calikd.metrics import CalibrationReport, calibration_report
from calikd.store import load_model
from calikd.store.checkpoint import checkpoint_id
from calikd.utils.device import Precision


@dataclass
class DistillTeacher:
    """A frozen teacher with the calibrator applied to its logits before distillation."""

    model: nn.Module
    meta: dict[str, Any]
    path: str
    checkpoint_id: str
    calibrator: Calibrator | None
    calibration: str  # what was asked for
    calibration_source: str  # where the calibrator came from, in words
    notes: list[str] = field(default_factory=list)
    applied: bool = True  # False when the fitted temperature serves as the distillation temperature instead

    @property
    def temperature(self) -> float | None:
        """The fitted temperature when the calibrator is temperature scaling."""
        if isinstance(self.calibrator, TemperatureScaling):
            return float(self.calibrator.temperature)
        return None

    def calibration_fn(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Raw logits -> calibrated float32 logits on the logits' device, or None without a calibrator.

        Called on every batch, so it skips the calibrator's input checks (a host sync each): the teacher's
        weights were checked finite when it was loaded.
        """
        calibrator = self.calibrator
        if calibrator is None or not self.applied:
            return None
        if isinstance(calibrator, TemperatureScaling):
            return calibrator.transform_unchecked

        def on_cpu(logits: torch.Tensor) -> torch.Tensor:  # fitted tensors of other calibrators live on CPU
            return calibrator.transform_unchecked(logits.cpu()).to(logits.device)

        return on_cpu

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for checkpoints and reports."""
        return {
            "checkpoint": self.path,
            "checkpoint_id": self.checkpoint_id,
            "model": self.meta.get("model", {}).get("name"),
            "calibration": self.calibration,
            "calibration_source": self.calibration_source,
            "calibrator": self.calibrator.record if self.calibrator is not None else None,
            "temperature": self.temperature,
            "calibrator_applied": self.calibrator is not None and self.applied,
        }


def _check_finite_weights(model: nn.Module, path: str | Path) -> None:
    """A teacher with NaN or inf weights gives non-finite logits: refuse it before distilling from it."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(
            f"teacher checkpoint '{path}' has NaN or inf weights ({', '.join(bad[:3])}{more})",
            hint="its training diverged: retrain it, or distil from another checkpoint",
        )


def load_teacher(
    path: str | Path,
    calibration: str | Path | CalibratorSpec = "auto",
    *,
    device: torch.device,
    val_logits: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> DistillTeacher:
    """Load the teacher at ``path`` (eval mode, no gradients) with the calibrator ``calibration`` asks for.

    ``val_logits(model)`` returns the teacher's ``(logits, labels)`` on its held-out val split; it is called
    only when a temperature has to be fitted now.
    """
    model, meta = load_model(path, device=device)
    _check_finite_weights(model, path)
    model.requires_grad_(False)
    ident = checkpoint_id(path)
    notes: list[str] = []
    spec = parse_calibrator_spec(calibration)
    calibrator, found = resolve_calibrator(path, spec, required=False)
    if spec.kind == "none":
        source = "none (raw logits)"
    elif spec.kind == "auto":
        if calibrator is None:
            source = "none: no calibrator is stored next to the checkpoint"
            notes.append(
                f"teacher '{path}' has no stored calibrator; run `calikd calibrate {path}` to add one"
            )
        else:
            source = f"stored: {found}"
    elif spec.kind == "temperature":
        if calibrator is not None:
            source = f"stored: {found}"
        else:
            if val_logits is None:
                raise ConfigError("fitting the teacher's temperature needs its val split (val_logits=)")
            logits, labels = val_logits(model)
            if len(labels) == 0:
                raise ConfigError(
                    "cannot fit the teacher's temperature: its dataset has no val split (val_fraction 0)",
                    hint="calibrate on a held-out split: retrain the teacher with --val-fraction > 0",
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", CalibrationOnTestWarning)
                calibrator = TemperatureScaling().fit(logits, labels, split="val")
            calibrator.record["checkpoint_id"] = ident
            source = f"fitted now on the teacher's val split ({len(labels)} samples)"
    else:
        source = f"given: {found}"
    return DistillTeacher(
        model=model,
        meta=meta,
        path=str(path),
        checkpoint_id=ident,
        calibrator=calibrator,
        calibration=str(spec),
        calibration_source=source,
        notes=notes,
    )


def module_teacher(
    module: nn.Module,
    meta: dict[str, Any],
    calibration: str | CalibratorSpec = "none",
    *,
    device: torch.device,
    val_logits: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> DistillTeacher:
    """An ``nn.Module`` in memory as the teacher (``distill(config, teacher=module, ...)``): frozen, on
    ``device``; ``calibration`` ``none`` or ``temperature`` (fitted now on val: a module has no stored
    calibrator)."""
    spec = parse_calibrator_spec(calibration, keywords=("none", "temperature"), paths=False)
    model = module.to(device).eval().requires_grad_(False)
    _check_finite_weights(model, "the given teacher module")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    ident = digest.hexdigest()[:16]
    calibrator, source = None, "none (raw logits)"
    if spec.kind == "temperature":
        if val_logits is None:
            raise ConfigError("fitting the teacher's temperature needs its val split (val_logits=)")
        logits, labels = val_logits(model)
        if len(labels) == 0:
            raise ConfigError("cannot fit the teacher's temperature: the dataset has no val split")
        with warnings.catch_warnings():
            warnings.simplefilter("error", CalibrationOnTestWarning)
            calibrator = TemperatureScaling().fit(logits, labels, split="val")
        calibrator.record["checkpoint_id"] = ident
        source = f"fitted now on the val split ({len(labels)} samples)"
    return DistillTeacher(
        model=model,
        meta=meta,
        path=f"<{type(module).__name__} in memory>",
        checkpoint_id=ident,
        calibrator=calibrator,
        calibration=str(spec),
        calibration_source=source,
    )


def teacher_report(
    teacher: DistillTeacher,
    splits: dict[str, ArrayDataset],
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    precision: Precision,
    batch_size: int,
    n_bins: int = 15,
    runtime: Distributed | None = None,
) -> dict[str, dict[str, CalibrationReport]]:
    """The teacher's metrics per split, ``{"val": {"raw": report, "calibrated": report}, "test": ...}``
    (under data-parallel training, ``runtime``, from every rank's shard)."""
    out: dict[str, dict[str, CalibrationReport]] = {}
    for split, dataset in splits.items():
        if len(dataset) == 0:
            continue
        logits, labels = predict_logits(
            teacher.model,
            dataset,
            transform,
            device=device,
            precision=precision,
            batch_size=batch_size,
            runtime=runtime,
        )
        entry = {"raw": calibration_report(logits, labels, n_bins=n_bins)}
        if teacher.calibrator is not None:
            entry["calibrated"] = calibration_report(
                teacher.calibrator.transform(logits), labels, n_bins=n_bins
            )
        out[split] = entry
    return out
