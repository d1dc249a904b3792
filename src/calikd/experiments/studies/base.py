"""What every study shares: its sweep at a preset (or a smoke version of it), running that sweep and writing
its report with the claim and our numbers, and the helpers the verdicts compute those numbers with.

Presets (the same names for every study):

- ``quick``: Fashion-MNIST (a 20,000-image training subset), small models, teachers and students trained to
  convergence (cosine schedules, 8-12 epochs), one seed: <= 10 minutes on 2 CPU cores each.
- every Fashion-MNIST preset asks its teachers for an accuracy floor (``QUICK_FLOORS`` / ``FULL_FLOORS``) and
  its report's "Protocol checks" say which teachers and students met the protocol.
- ``full``: Fashion-MNIST (a 10,000-image subset), longer-trained teachers, 3 seeds: <= 90 minutes on 2 CPU
  cores (the wall times measured are in ``docs/results.md``).
- ``paper``: the papers' protocols (CIFAR-100 with the CRD benchmark recipe: 240 epochs, SGD lr 0.05,
  batch 64, decay x0.1 at 150/180/210, weight decay 5e-4; KD T = 4, CE 0.1 + KD 0.9; each method's per-pair
  values from its authors, ``method_preset: paper``), meant for a GPU.
  ``smoke=True`` swaps in tiny synthetic data of the same shape and one epoch, to check that it runs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from calikd.analysis import correlate, paired_difference
from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.presets import PRESETS
from calikd.experiments.protocol import protocol_rows
from calikd.experiments.report import SweepResults, sweep_report
from calikd.experiments.runner import run_sweep
from calikd.experiments.spec import parse_floors, parse_spec
from calikd.experiments.studies.registry import get_study
from calikd.results import RunRecord
from calikd.store import read_checkpoint


# ---------------------------------------------------------------------------------------------- verdicts
def correlate_or_reason(xs: list[float], ys: list[float], n_boot: int = 1000) -> Any:
    """``correlate`` or the reason it cannot be computed (constant values, too few points)."""
    try:
        return correlate(xs, ys, n_boot=n_boot)
    except ConfigError as exc:
        return exc.message


def students(results: SweepResults, **where: Any) -> list[RunRecord]:
    """The student runs whose config has every ``key=value`` of ``where``."""
    return [r for r in results.students if all(r.config.get(k) == v for k, v in where.items())]


def finite_mean(values: list[float | None]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def by_teacher(runs: list[RunRecord], metric: str = "student_test_accuracy") -> dict[str, float]:
    """``{teacher checkpoint: mean of metric}`` over ``runs``."""
    groups: dict[str, list[float | None]] = defaultdict(list)
    for run in runs:
        groups[run.config["teacher"]].append(run.metrics.get(metric))
    return {k: finite_mean(v) for k, v in groups.items()}


def paired(results: SweepResults, metric: str, base: dict[str, Any], other: dict[str, Any]) -> str:
    """``other`` minus ``base`` on ``metric``, paired over the runs alike in every other setting: the mean
    difference with its 95% CI, p-value and MDE (or why there is no interval)."""

    def key(r: RunRecord) -> tuple:
        return tuple(str(r.config.get(k)) for k in sorted(r.config) if k not in {*base, *other})

    a_runs = {key(r): r for r in students(results, **base)}
    pairs = [(a_runs[key(r)], r) for r in students(results, **other) if key(r) in a_runs]
    if len(pairs) == 1:
        a, b = (p.metrics.get(metric) for p in pairs[0])
        if a is not None and b is not None:
            return f"{b - a:+.4f} (one pair: no interval; more seeds for one)"
    if len(pairs) < 2:
        return f"{len(pairs)} pair(s): too few for an interval"
    d = paired_difference(
        [p[0].metrics.get(metric) for p in pairs], [p[1].metrics.get(metric) for p in pairs]
    )
    return (
        f"{d.mean:+.4f} [95% CI {d.ci[0]:+.4f}, {d.ci[1]:+.4f}] over {d.n} pairs, p = {d.p_value:.3g}; "
        f"MDE {d.mde:.4f} at 80% power"
    )


def checkpoint_size(checkpoint: str) -> int:
    """Number of weights in a checkpoint (batch-norm counters excluded)."""
    state = read_checkpoint(checkpoint).state_dict
    return sum(t.numel() for k, t in state.items() if not k.endswith("num_batches_tracked"))


# ----------------------------------------------------------------------------------------- the sweep
def smoke_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The same sweep on tiny synthetic data shaped like its dataset, two teacher epochs and one student
    epoch (tests: checks that it runs, measures nothing)."""
    # CIFAR's image shape, but 10 classes, so that one-epoch teachers beat chance and can be calibrated
    shape = {"cifar100": (10, 3, 32), "fashion-mnist": (10, 1, 28)}[spec["dataset"]]
    data = {
        "train_size": 32 * shape[0],
        "test_size": 8 * shape[0],
        "num_classes": shape[0],
        "in_channels": shape[1],
        "image_size": shape[2],
        "noise": 10.0,  # clear patterns, so that deep teachers (ResNet-110) beat chance in two epochs
    }
    small = {"epochs": 1, "batch_size": 16, "milestones": []}
    out = {**spec, "dataset": "synthetic", "dataset_options": data}
    out["teacher_defaults"] = {**spec.get("teacher_defaults", {}), **small, "epochs": 2, "schedule": "cosine"}
    out["teachers"] = [{k: v for k, v in t.items() if k != "epochs"} for t in spec["teachers"]]
    out["distill"] = {**spec.get("distill", {}), **small, "schedule": "cosine"}
    out["methods"] = [
        {**m, "options": {**m.get("options", {}), "nce_k": 64}}
        if isinstance(m, dict) and m.get("method") == "crd"
        else ({"method": "crd", "options": {"nce_k": 64}} if m == "crd" else m)
        for m in spec["methods"]
    ]
    return out


def build_spec(name: str, preset: str, *, smoke: bool = False, out: str | None = None) -> dict[str, Any]:
    """The sweep mapping of study ``name`` at ``preset``."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown preset '{preset}'{did_you_mean(preset, PRESETS)}",
            hint=f"choose one of: {', '.join(PRESETS)}",
        )
    study = get_study(name)
    if preset not in study.presets:
        raise ConfigError(
            f"study '{name}' has no preset '{preset}'", hint=f"choose one of: {', '.join(study.presets)}"
        )
    spec = study.build(preset)
    if smoke:
        spec = smoke_spec(spec)
    tag = f"{name}-{preset}{'-smoke' if smoke else ''}"
    return {"name": tag, "out": out or f"runs/reproduce/{tag}", **spec}


def reproduce(
    name: str,
    preset: str = "quick",
    *,
    db_path: str = "runs/calikd.db",
    workers: int = 1,
    smoke: bool = False,
    out: str | None = None,
    log: Callable[[str], None] | None = print,
    **sweep_options: Any,
) -> tuple[Any, tuple[Any, Any]]:
    """Run study ``name`` at ``preset`` and write its report; returns (sweep outcome, report paths).
    ``sweep_options`` go to :func:`~calikd.experiments.runner.run_sweep` (``executor``, ``ray_options``)."""
    study = get_study(name)
    spec = parse_spec(build_spec(name, preset, smoke=smoke, out=out))
    outcome = run_sweep(spec, db_path=db_path, workers=workers, log=log, **sweep_options)

    def claim(doc: Any, results: SweepResults) -> None:
        doc.heading("The claim", 2)
        doc.bullet_list(
            [
                f"**Paper:** {study.paper}",
                f"**Claim:** {study.claim}",
                f"**Their number:** {study.their_number}",
                f"**Preset:** {preset}" + (" (smoke: tiny synthetic data)" if smoke else ""),
            ]
        )
        rows = study.verdict(results)
        if rows:
            doc.table(["our measurement", "value"], [list(r) for r in rows])
        else:
            doc.paragraph("Not enough finished runs to compute our numbers yet.")
        protocol = protocol_rows(results, parse_floors(spec.raw.get("teacher_floors")))
        if protocol:
            doc.heading("Protocol checks", 3)
            doc.paragraph(
                "Claims rest on converged teachers that meet their accuracy floor and on converged students; "
                "a calibration spread (T well below and well above 1) is what a calibration claim needs."
            )
            doc.table(["check", "result"], [list(r) for r in protocol])

    paths = sweep_report(db_path, spec.name, f"{spec.out}/report", preface=claim)
    return outcome, paths
