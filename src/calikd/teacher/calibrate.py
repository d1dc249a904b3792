"""Calibrate a teacher checkpoint: fit calibrators on its held-out val split, compare test metrics.

Artifacts live next to the checkpoint ``<stem>.safetensors``:

- ``<stem>.calibrator.json`` (+ ``.safetensors``): the primary calibrator (the one method asked for, or
  temperature scaling with ``--method all``); distillation picks it up with ``--teacher-calibration auto``.
- ``<stem>.calibrator-<method>.json``: every other fitted method.
- ``<stem>.calibration.json`` / ``.md`` / ``.png``: the report (val and test metrics before and after, fitted
  parameters, reliability diagrams).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from calikd.calibration import Calibrator, create_calibrator, list_calibrators
from calikd.calibration.lookup import calibrator_suffix, checkpoint_stem, suffixed
from calikd.data import DatasetSplits, EvalTransform, load_dataset
from calikd.engine.evaluate import RunOptions, checkpoint_logits, predict_logits
from calikd.errors import CalikdError, ConfigError, did_you_mean
from calikd.metrics import CalibrationReport, calibration_report
from calikd.report.calibration import calibration_markdown, write_calibration_plot
from calikd.store import per_channel
from calikd.store.checkpoint import checkpoint_id
from calikd.utils.device import resolve_device, resolve_precision
from calikd.utils.io import atomic_write_bytes, atomic_write_json
from calikd.utils.run_lock import hold_run_dir, locks_run_dir

if TYPE_CHECKING:
    from typing_extensions import Unpack

OBJECTIVES = ("nll", "ece", "ace", "brier")


def resolve_methods(methods: Sequence[str]) -> list[str]:
    """Expand ``all`` and check the names; the first method is the primary one."""
    known = list_calibrators()
    names: list[str] = []
    for name in methods:
        expanded = (["temperature"] + [m for m in known if m != "temperature"]) if name == "all" else [name]
        for method in expanded:
            if method not in known:
                raise ConfigError(
                    f"unknown calibration method '{method}'{did_you_mean(method, [*known, 'all'])}",
                    hint=f"choose from: {', '.join([*known, 'all'])}",
                )
            if method not in names:
                names.append(method)
    if not names:
        raise ConfigError("no calibration method given", hint=f"choose from: {', '.join([*known, 'all'])}")
    return names


@dataclass
class CalibrationOutcome:
    """Everything a calibration run produced."""

    checkpoint: str
    dataset: str
    fit_split: str
    methods: list[str]
    objective: str
    before: dict[str, CalibrationReport]  # split -> report
    after: dict[str, dict[str, CalibrationReport]]  # method -> split -> report
    records: dict[str, dict[str, Any]]  # method -> what the calibrator fitted
    calibrators: dict[str, Calibrator] = field(default_factory=dict, repr=False)  # method -> fitted
    artifacts: dict[str, str] = field(default_factory=dict)  # method -> calibrator JSON path
    report_files: list[str] = field(default_factory=list)
    plot: str | None = None  # reliability diagrams (PNG)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (reports as dicts)."""
        return {
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "fit_split": self.fit_split,
            "methods": self.methods,
            "objective": self.objective,
            "before": {s: r.to_dict() for s, r in self.before.items()},
            "after": {m: {s: r.to_dict() for s, r in d.items()} for m, d in self.after.items()},
            "records": self.records,
            "artifacts": self.artifacts,
            "report_files": self.report_files,
            "plot": self.plot,
        }

    def markdown(self) -> str:
        """A Markdown table of test metrics before and after each calibrator."""
        return calibration_markdown(
            checkpoint=self.checkpoint,
            dataset=self.dataset,
            fit_split=self.fit_split,
            objective=self.objective,
            before=self.before["test"],
            after={m: self.after[m]["test"] for m in self.methods},
            params={m: self.records[m].get("params", {}) for m in self.methods},
            plot=self.plot,
        )


@locks_run_dir
def calibrate_checkpoint(
    checkpoint: str | Path,
    methods: Sequence[str] = ("temperature",),
    *,
    objective: str = "nll",
    fit_split: str = "val",
    n_bins: int = 15,
    write: bool = True,
    plots: bool = True,
    out_dir: str | Path | None = None,
    **run: Unpack[RunOptions],
) -> CalibrationOutcome:
    """Fit ``methods`` on ``fit_split`` of the checkpoint's dataset; report val and test metrics.

    ``fit_split="test"`` is allowed here but warns (the CLI refuses it). With ``write`` the calibrators and
    the report are written next to the checkpoint (see the module docstring), or into ``out_dir`` under the
    checkpoint's file names; that folder is locked meanwhile (see :mod:`calikd.utils.run_lock`). ``run``:
    how the checkpoint runs over its data (see :func:`calikd.engine.evaluate.checkpoint_logits`).
    """
    names = resolve_methods(methods)
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{objective}'{did_you_mean(objective, OBJECTIVES)}")
    if fit_split not in ("val", "train", "test"):
        raise ConfigError(f"unknown split '{fit_split}'; fit on 'val'")
    if fit_split == "train":
        warnings.warn(
            "fitting a calibrator on the training split: the model has seen it; use val", stacklevel=3
        )
    stem = checkpoint_stem(checkpoint)
    written = stem if out_dir is None else Path(out_dir) / stem.name  # stem of the files written
    if write:
        hold_run_dir(written.parent)
    splits = tuple(dict.fromkeys((fit_split, "val", "test")))
    outputs = checkpoint_logits(checkpoint, splits, **run)
    if len(outputs.logits[fit_split][1]) == 0:
        raise ConfigError(
            f"the '{fit_split}' split of checkpoint '{checkpoint}' is empty (trained with val_fraction=0?)",
            hint="retrain the teacher with a held-out validation split (e.g. --val-fraction 0.1)",
        )
    outcome = _fit_all(str(checkpoint), outputs.dataset, outputs.logits, names, objective, fit_split, n_bins)
    fitted, before, after = outcome.calibrators, outcome.before, outcome.after
    if write:
        suffixes = {m: calibrator_suffix(None if i == 0 else m) for i, m in enumerate(fitted)}
        targets = {m: suffixed(written, suffix) for m, suffix in suffixes.items()}
        outcome.artifacts = {m: str(suffixed(t, ".json")) for m, t in targets.items()}
        paths = {ext: suffixed(written, f".calibration{ext}") for ext in (".json", ".md", ".png")}
        if plots:
            tests = {m: after[m]["test"] for m in names}
            outcome.plot = str(write_calibration_plot(before["test"], tests, names, paths[".png"]))
        outcome.report_files = [str(paths[".json"]), str(paths[".md"])]
        # a file name that is not UTF-8 shows escaped (as \\xff) in the report
        atomic_write_bytes(paths[".md"], outcome.markdown().encode(errors="backslashreplace"))
        atomic_write_json(paths[".json"], outcome.to_dict())
        weights = checkpoint_id(stem)
        for method, cal in fitted.items():  # last: a failure above leaves no calibrator behind
            cal.record["checkpoint_id"] = weights
            cal.save(targets[method])
    return outcome


def _fit_all(
    source: str,
    dataset: str,
    logits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    names: list[str],
    objective: str,
    fit_split: str,
    n_bins: int,
) -> CalibrationOutcome:
    """Fit every calibrator of ``names`` on ``logits[fit_split]``; val and test reports before and after."""
    fit_logits, fit_labels = logits[fit_split]
    before = {s: calibration_report(*logits[s], n_bins=n_bins) for s in ("val", "test")}
    fitted: dict[str, Calibrator] = {}
    for method in names:
        kwargs = {"objective": objective} if method == "temperature" else {}
        try:
            fitted[method] = create_calibrator(method, **kwargs).fit(fit_logits, fit_labels, split=fit_split)
        except CalikdError as exc:
            raise type(exc)(f"{method}: {exc.message}", exc.hint) from exc
    after = {
        m: {
            s: calibration_report(cal.transform(logits[s][0]), logits[s][1], n_bins=n_bins)
            for s in ("val", "test")
        }
        for m, cal in fitted.items()
    }
    return CalibrationOutcome(
        checkpoint=source,
        dataset=dataset,
        fit_split=fit_split,
        methods=names,
        objective=objective,
        before=before,
        after=after,
        records={m: cal.record for m, cal in fitted.items()},
        calibrators=fitted,
    )


def calibrate_module(
    module: nn.Module,
    dataset: str | DatasetSplits,
    *,
    normalization: tuple[Sequence[float], Sequence[float]],
    methods: Sequence[str] = ("temperature",),
    objective: str = "nll",
    n_bins: int = 15,
    device: str = "auto",
    batch_size: int = 1024,
    **dataset_kwargs: Any,
) -> CalibrationOutcome:
    """Fit calibrators to any ``nn.Module`` on the val split of ``dataset`` (a name, loaded with
    ``dataset_kwargs`` such as ``data_dir``, ``val_fraction``, ``split_seed``; or ready splits), fed with
    its own ``normalization`` ``(mean, std)``; val and test metrics before and after. The fitted
    calibrators are in ``outcome.calibrators``; nothing is written."""
    names = resolve_methods(methods)
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{objective}'{did_you_mean(objective, OBJECTIVES)}")
    if not isinstance(module, nn.Module):
        raise ConfigError(f"calibrate_module takes a torch nn.Module, got {type(module).__name__}")
    data = dataset if isinstance(dataset, DatasetSplits) else load_dataset(dataset, **dataset_kwargs)
    if len(data.val) == 0:
        raise ConfigError("the dataset has no val split to fit on", hint="load it with val_fraction > 0")
    mean, std = normalization
    channels = data.info.in_channels
    transform = EvalTransform(per_channel(mean, channels), per_channel(std, channels))
    dev = resolve_device(device)
    module = module.to(dev).eval()
    precision = resolve_precision("fp32", dev)
    logits = {
        split: predict_logits(module, data.split(split), transform, device=dev, precision=precision,
                              batch_size=batch_size)
        for split in ("val", "test")
    }  # fmt: skip
    name = f"<{type(module).__name__} in memory>"
    return _fit_all(name, data.info.name, logits, names, objective, "val", n_bins)
