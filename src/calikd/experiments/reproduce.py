"""One-command reproductions of the four papers behind calikd (``calikd reproduce NAME --preset P``).

Each reproduction is a sweep (see :mod:`calikd.experiments.spec`) built for a preset, plus the claim it tests
and how our number is computed from the sweep's results:

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
from dataclasses import dataclass
from typing import Any

from calikd.analysis import correlate, paired_difference
from calikd.errors import ConfigError, did_you_mean
from calikd.experiments import crd_benchmark
from calikd.experiments.presets import (
    CPU,
    CRD_RECIPE,
    FULL_FLOORS,
    FULL_SUBSET,
    PRESETS,
    QUICK_CONVERGED_SUBSET,
    QUICK_FLOORS,
    cifar100,
    fmnist,
)
from calikd.experiments.protocol import protocol_rows
from calikd.experiments.report import SweepResults
from calikd.experiments.spec import parse_floors
from calikd.results import RunRecord


def song2021(preset: str) -> dict[str, Any]:
    """Teachers of increasing size, uncalibrated vs temperature-scaled, one student."""
    if preset == "paper":
        teachers = [{"name": m, "model": m} for m in ("resnet20", "resnet32", "resnet56", "resnet110")]
        return {
            **cifar100(),
            "teachers": teachers,
            "teacher_defaults": CRD_RECIPE,
            "calibrations": ["none", "temperature"],
            "methods": ["kd"],
            "students": ["resnet8"],
            "seeds": [0, 1, 2],
            "distill": {**CRD_RECIPE, "method_preset": "paper"},
        }
    if preset == "quick":
        return {
            **fmnist("quick", QUICK_CONVERGED_SUBSET),
            # one recipe that lets capacity show as over-confidence: no augmentation, no weight decay
            # widths 8, 16, 32: 16x the parameters from the first to the last (cnn_medium costs too much here)
            "teachers": [{"name": m, "model": m} for m in ("cnn_tiny", "cnn_small", "cnn")],
            "teacher_defaults": {"epochs": 8, "augment": False, "weight_decay": 0.0, **CPU},
            "teacher_floors": QUICK_FLOORS,
            "calibrations": ["none", "temperature"],
            "methods": ["kd"],
            "students": ["cnn_tiny"],
            "seeds": [0],
            "distill": {"epochs": 12, **CPU},
        }
    teachers = [{"name": m, "model": m} for m in ("resnet8", "resnet14", "resnet20", "resnet32")]
    return {
        **fmnist(preset, FULL_SUBSET),
        "teachers": teachers,
        "teacher_defaults": {"epochs": 10, **CPU},
        "teacher_floors": FULL_FLOORS,
        "calibrations": ["none", "temperature"],
        "methods": ["kd"],
        "students": ["cnn_small"],
        "seeds": [0, 1, 2],
        "distill": {"epochs": 4, **CPU},
    }


def kim2025(preset: str) -> dict[str, Any]:
    """A zoo of >= 10 teachers varied in architecture, size and recipe; students from each, uncalibrated and
    calibrated (and, beyond quick, on top of DKD and logit standardisation)."""
    if preset == "paper":
        zoo = [
            "resnet32x4",
            "resnet56",
            "resnet110",
            "wrn_40_2",
            "wrn_16_2",
            "vgg13",
            "resnet20",
            "resnet32",
            "resnet44",
            "vgg11",
            "mobilenetv2",
            "shufflenetv2",
        ]
        return {
            **cifar100(),
            "teachers": [{"name": m, "model": m} for m in zoo],
            "teacher_defaults": CRD_RECIPE,
            "calibrations": ["none", "temperature"],
            "methods": ["kd", "dkd", "ls"],
            "students": ["wrn_16_2", "shufflenetv2"],
            "seeds": [0],
            "distill": {**CRD_RECIPE, "method_preset": "paper"},
        }
    if preset == "quick":
        return kim2025_quick()
    e = 10
    zoo = [
        {"name": "cnn_tiny", "model": "cnn_tiny"},
        {"name": "cnn_small", "model": "cnn_small"},
        {"name": "cnn", "model": "cnn"},
        {"name": "cnn_medium", "model": "cnn_medium"},
        {"name": "mlp_small", "model": "mlp_small", "augment": False},
        {"name": "mlp", "model": "mlp", "augment": False},
        {"name": "resnet8", "model": "resnet8"},
        {"name": "resnet14", "model": "resnet14"},
        {"name": "cnn_long_nowd", "model": "cnn", "epochs": 2 * e, "weight_decay": 0.0},  # over-confident
        {"name": "cnn_smooth", "model": "cnn", "label_smoothing": 0.1},  # under-confident
        {"name": "cnn_medium_lowlr", "model": "cnn_medium", "lr": 0.02},
    ]
    return {
        **fmnist(preset, FULL_SUBSET),
        "teachers": zoo,
        "teacher_defaults": {"epochs": e, **CPU},
        "teacher_floors": FULL_FLOORS,
        "calibrations": ["none", "temperature"],
        "methods": ["kd", "dkd", "ls"],
        "students": ["cnn_tiny"],
        "seeds": [0, 1, 2],
        "distill": {"epochs": 3, **CPU},
    }


def kim2025_quick() -> dict[str, Any]:
    """Five teachers trained to convergence on a 20,000-image subset (10 epochs, cosine), their calibration
    spread made by real mechanisms: no augmentation (over-confident MLPs, more so without weight decay) and
    label smoothing (under-confident); cnn_tiny students distilled from each, raw and temperature-scaled.
    Measured on the AMD EPYC (2 cores): teachers 87.9-90.3% test accuracy, fitted T 0.5-1.7."""
    zoo = [
        {"name": "mlp", "model": "mlp"},  # over-confident (T ~1.5)
        {"name": "mlp_large_nowd", "model": "mlp_large", "weight_decay": 0.0},  # more so (T ~1.7)
        {"name": "cnn_small", "model": "cnn_small"},  # T ~1.0
        {"name": "cnn_small_smooth", "model": "cnn_small", "label_smoothing": 0.1},  # under-confident
        {"name": "mlp_smooth", "model": "mlp", "label_smoothing": 0.1},  # under-confident
    ]
    return {
        **fmnist("quick", QUICK_CONVERGED_SUBSET),
        "teachers": zoo,
        "teacher_defaults": {"epochs": 10, "augment": False, **CPU},
        "teacher_floors": QUICK_FLOORS,
        "calibrations": ["none", "temperature"],
        "methods": ["kd"],
        "students": ["cnn_tiny"],
        "seeds": [0],
        "distill": {"epochs": 12, **CPU},
    }


def mishra2023(preset: str) -> dict[str, Any]:
    """KD, RKD and CRD (CRD in the `paper` preset only), each with none / cutout / mixup / CutMix / AugMix,
    from an uncalibrated teacher."""
    augments = ["none", "cutout", "mixup", "cutmix", "augmix"]
    if preset == "paper":
        return {
            **cifar100(),
            "teachers": [{"name": "wrn_40_2", "model": "wrn_40_2"}],
            "teacher_defaults": CRD_RECIPE,
            "calibrations": ["none"],
            "methods": ["ce", "kd", {"method": "rkd", "options": {"kd_weight": 1.0}}, "crd"],
            "students": ["shufflenetv1"],
            "kd_augments": augments,
            "seeds": [0, 1, 2],
            "distill": {**CRD_RECIPE, "lr": 0.01, "method_preset": "paper"},
            "robustness": {"corruptions": "benchmark", "seed": 0},  # CIFAR-100-C style, all 10,000 images
        }
    if preset == "quick":
        return {
            **fmnist("quick", QUICK_CONVERGED_SUBSET),
            # no augmentation, no weight decay, trained to convergence; cnn_small rather than cnn keeps the
            # KD students' teacher passes cheap enough for 10 minutes (with cnn: 9 min 52 s)
            "teachers": [{"name": "cnn_small", "model": "cnn_small"}],
            "teacher_defaults": {"epochs": 10, "augment": False, "weight_decay": 0.0, **CPU},
            "teacher_floors": QUICK_FLOORS,
            "calibrations": ["none"],
            "methods": ["ce", "kd"],  # RKD from `full` on (time)
            "students": ["cnn_tiny"],
            "kd_augments": augments,
            "seeds": [0],
            "distill": {"epochs": 10, **CPU},
            "robustness": {"corruptions": "benchmark", "test_subset": 500, "seed": 0},
        }
    return {
        **fmnist(preset, FULL_SUBSET),
        "teacher_floors": FULL_FLOORS,
        "teachers": [{"name": "resnet20", "model": "resnet20"}],
        "teacher_defaults": {"epochs": 10, **CPU},
        "calibrations": ["none"],
        # CRD is in the `paper` preset only: on 2 CPU cores a CRD student trains ~7x slower than a KD one
        # (teacher features every step, two memory banks), which would not fit the presets' time budgets
        "methods": ["ce", "kd", "rkd"],
        "students": ["cnn_small"],
        "kd_augments": augments,
        "seeds": [0, 1, 2],
        "distill": {"epochs": 4, **CPU},
        # every teacher and student also on Fashion-MNIST-C (the 15 benchmark corruptions, 5 severities)
        "robustness": {"corruptions": "benchmark", "test_subset": 2000, "seed": 0},
    }


def cuk2023(preset: str) -> dict[str, Any]:
    """Cross-quality KD: student resolutions x teacher temperatures, the teacher fed full- or low-resolution
    images; the Hinton loss as in the thesis code ((1 - w) CE + w T^2 KL, w = 0.5)."""
    kd = {"method": "kd", "options": {"ce_weight": 0.5, "kd_weight": 0.5}}
    if preset == "paper":
        return {
            **cifar100(),
            "teachers": [{"name": "resnet56", "model": "resnet56"}],
            "teacher_defaults": CRD_RECIPE,
            "calibrations": ["none"],
            "methods": ["ce", kd],
            "students": ["resnet20"],
            "student_resolutions": [16, 8],
            "teacher_inputs": ["full", "low"],
            "taus": [1.0, 4.0, 10.0, 20.0],
            "seeds": [0, 1, 2],
            "distill": {**CRD_RECIPE, "method_preset": "paper"},
        }
    if preset == "quick":
        return {
            **fmnist("quick", QUICK_CONVERGED_SUBSET),
            "teachers": [{"name": "cnn", "model": "cnn"}],
            "teacher_defaults": {"epochs": 8, "augment": False, **CPU},
            "teacher_floors": QUICK_FLOORS,
            "calibrations": ["none"],
            "methods": ["ce", kd],
            "students": ["cnn_small"],
            "student_resolutions": [14, 7],
            "teacher_inputs": ["full", "low"],
            "taus": [1.0, 4.0, 10.0],
            "seeds": [0],
            "distill": {"epochs": 8, **CPU},  # 10 epochs: 13/14 converged but 10 min 44 s here
        }
    return {
        **fmnist(preset, FULL_SUBSET),
        "teacher_floors": FULL_FLOORS,
        "teachers": [{"name": "resnet20", "model": "resnet20"}],
        "teacher_defaults": {"epochs": 10, **CPU},
        "calibrations": ["none"],
        "methods": ["ce", kd],
        "students": ["cnn_small"],
        "student_resolutions": [14, 7],
        "teacher_inputs": ["full", "low"],
        "taus": [1.0, 2.0, 4.0, 10.0, 20.0],
        "seeds": [0, 1, 2],
        "distill": {"epochs": 4, **CPU},
    }


# ---------------------------------------------------------------------------------------------- verdicts
def _correlate(xs: list[float], ys: list[float], n_boot: int = 1000) -> Any:
    """``correlate`` or the reason it cannot be computed (constant values, too few points)."""
    try:
        return correlate(xs, ys, n_boot=n_boot)
    except ConfigError as exc:
        return exc.message


def _students(results: SweepResults, **where: Any) -> list[RunRecord]:
    return [r for r in results.students if all(r.config.get(k) == v for k, v in where.items())]


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _by_teacher(runs: list[RunRecord], metric: str = "student_test_accuracy") -> dict[str, float]:
    groups: dict[str, list[float | None]] = defaultdict(list)
    for run in runs:
        groups[run.config["teacher"]].append(run.metrics.get(metric))
    return {k: _mean(v) for k, v in groups.items()}


def _paired(results: SweepResults, metric: str, base: dict[str, Any], other: dict[str, Any]) -> str:
    def key(r: RunRecord) -> tuple:
        return tuple(str(r.config.get(k)) for k in sorted(r.config) if k not in {*base, *other})

    a_runs = {key(r): r for r in _students(results, **base)}
    pairs = [(a_runs[key(r)], r) for r in _students(results, **other) if key(r) in a_runs]
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


def _size(checkpoint: str) -> int:
    """Number of weights in a checkpoint (batch-norm counters excluded)."""
    from calikd.store import read_checkpoint

    state = read_checkpoint(checkpoint).state_dict
    return sum(t.numel() for k, t in state.items() if not k.endswith("num_batches_tracked"))


def _verdict_song(results: SweepResults) -> list[tuple[str, str]]:
    rows = []
    for calibration in ("none", "temperature"):
        accs = _by_teacher(_students(results, method="kd", teacher_calibration=calibration))
        if len(accs) < 3:
            continue
        c = _correlate([_size(p) for p in accs], list(accs.values()))
        value = (
            c if isinstance(c, str) else f"{c.spearman_rho:+.3f} (Pearson r {c.pearson_r:+.3f}, n = {c.n})"
        )
        rows.append(
            (f"Spearman rho(teacher size, student accuracy), teacher calibration {calibration}", value)
        )
    rows.append(
        (
            "student accuracy, calibrated minus uncalibrated teacher",
            _paired(
                results,
                "student_test_accuracy",
                {"teacher_calibration": "none"},
                {"teacher_calibration": "temperature"},
            ),
        )
    )
    return rows


def _verdict_kim(results: SweepResults) -> list[tuple[str, str]]:
    rows = []
    accs = _by_teacher(_students(results, method="kd", teacher_calibration="none"))
    paths = [p for p in accs if p in results.teachers]
    if len(paths) >= 3:
        for metric in ("ace", "accuracy", "ece", "nll"):
            xs = [results.teachers[p].metrics.get(f"test_raw_{metric}") for p in paths]
            c = _correlate(xs, [accs[p] for p in paths])
            if isinstance(c, str):
                rows.append((f"R² (teacher {metric}, student accuracy)", c))
                continue
            ci = f" [95% CI {c.r2_ci[0]:.2f}, {c.r2_ci[1]:.2f}]" if c.r2_ci else ""
            rows.append(
                (
                    f"R² (teacher {metric}, student accuracy)",
                    f"{c.r2:.3f}{ci}, r = {c.pearson_r:+.3f}, n = {c.n}",
                )
            )
    for method in sorted({r.config["method"] for r in results.students}):
        rows.append(
            (
                f"{method}: student accuracy, calibrated minus uncalibrated teacher",
                _paired(
                    results,
                    "student_test_accuracy",
                    {"method": method, "teacher_calibration": "none"},
                    {"method": method, "teacher_calibration": "temperature"},
                ),
            )
        )
    return rows


def _verdict_mishra(results: SweepResults) -> list[tuple[str, str]]:
    rows = []
    robust = any("student_corrupt_ece" in r.metrics for r in results.students)
    metrics = [("ece", "test"), ("accuracy", "test")]
    if robust:
        metrics += [("ece", "corrupt"), ("accuracy", "corrupt")]
    for method in sorted({r.config["method"] for r in results.students}):
        for augment in ("cutout", "mixup", "cutmix", "augmix"):
            for metric, where in metrics:
                shown = f"student {metric}" + (" under corruption" if where == "corrupt" else "")
                rows.append(
                    (
                        f"{method} + {augment} minus {method}: {shown}",
                        _paired(
                            results,
                            f"student_{where}_{metric}",
                            {"method": method, "kd_augment": "none"},
                            {"method": method, "kd_augment": augment},
                        ),
                    )
                )
    return rows


def _verdict_cuk(results: SweepResults) -> list[tuple[str, str]]:
    rows = []
    for resolution in sorted({r.config["student_resolution"] for r in results.students} - {None}):
        for view in ("full", "low"):
            runs = [
                r
                for r in _students(results, method="kd", student_resolution=resolution, teacher_input=view)
                if r.config.get("tau") is not None
            ]
            taus = sorted({r.config["tau"] for r in runs})
            if len(taus) < 3:
                continue
            for metric in ("entropy", "ece", "accuracy"):
                ys = [
                    _mean([r.metrics.get(f"student_test_{metric}") for r in runs if r.config["tau"] == t])
                    for t in taus
                ]
                c = _correlate(taus, ys, n_boot=500)
                value = c if isinstance(c, str) else f"{c.spearman_rho:+.3f}"
                rows.append(
                    (
                        f"res {resolution:g}, teacher input {view}: Spearman rho(tau, student {metric})",
                        f"{value} over tau = {', '.join(f'{t:g}' for t in taus)}",
                    )
                )
    return rows


@dataclass(frozen=True)
class Reproduction:
    """A paper's claim, its reported number, the sweep that tests it, and how our number is computed."""

    name: str
    paper: str
    claim: str
    their_number: str
    build: Callable[[str], dict[str, Any]]
    verdict: Callable[[SweepResults], list[tuple[str, str]]]


REPRODUCTIONS = {
    r.name: r
    for r in (
        Reproduction(
            "song2021",
            "Song & Yang 2021, arXiv 2111.01684",
            "Larger teachers are over-confident and teach worse; after temperature scaling, teacher size "
            "correlates positively with student accuracy.",
            "qualitative (student accuracy vs teacher size, CIFAR-10 / Fashion-MNIST)",
            song2021,
            _verdict_song,
        ),
        Reproduction(
            "kim2025",
            "Kim, Park, Lee, Kwak 2025, arXiv 2508.20224",
            "A teacher's calibration error predicts student accuracy better than its accuracy does; "
            "temperature-scaling the teacher improves students, also on top of DKD and LS.",
            "R² 0.92 (teacher ACE vs student accuracy) vs 0.68 (teacher accuracy), CIFAR-100, 17 teachers",
            kim2025,
            _verdict_kim,
        ),
        Reproduction(
            "mishra2023",
            "Mishra, Krishna, Mishra 2023, arXiv 2302.11472",
            "Augmentation inside KD (cutout, mixup, CutMix, AugMix) gives a calibrated student from an "
            "uncalibrated teacher without losing accuracy, also with RKD and CRD.",
            "WRN-40-2 -> ShuffleNetV1, CIFAR-100: KD 71.05% / ECE 0.108; KD+CutMix 74.94% / ECE 0.046",
            mishra2023,
            _verdict_mishra,
        ),
        Reproduction(
            "cuk2023",
            "Čuk, Senge, Lauri, Frintrop 2023, arXiv 2304.07593",
            "In cross-quality KD a hotter teacher temperature raises the student's entropy, lowers its "
            "calibration error and raises its accuracy.",
            "qualitative (ImageNet, ResNet-50 -> ResNet-18 at 28-168 px)",
            cuk2023,
            _verdict_cuk,
        ),
        Reproduction(
            "tian2020",
            "Tian, Krishnan, Isola 2020 (CRD benchmark), arXiv 1910.10699",
            "The CRD benchmark: distillation methods on four CIFAR-100 teacher/student pairs (resnet32x4 -> "
            "resnet8x4, wrn_40_2 -> wrn_16_2, resnet56 -> resnet20, vgg13 -> vgg8); each method's published "
            "top-1 next to ours.",
            "the published top-1 of each method and pair, in the table below",
            crd_benchmark.build,
            crd_benchmark.verdict,
        ),
    )
}


def get_reproduction(name: str) -> Reproduction:
    """The reproduction called ``name`` (a clear error with the nearest name otherwise)."""
    if name not in REPRODUCTIONS:
        raise ConfigError(
            f"unknown reproduction '{name}'{did_you_mean(name, REPRODUCTIONS)}",
            hint=f"choose one of: {', '.join(REPRODUCTIONS)}",
        )
    return REPRODUCTIONS[name]


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
    """The sweep mapping of reproduction ``name`` at ``preset``."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown preset '{preset}'{did_you_mean(preset, PRESETS)}",
            hint=f"choose one of: {', '.join(PRESETS)}",
        )
    repro = get_reproduction(name)
    spec = repro.build(preset)
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
    """Run reproduction ``name`` at ``preset`` and write its report; returns (sweep outcome, report paths).
    ``sweep_options`` go to :func:`~calikd.experiments.runner.run_sweep` (``executor``, ``ray_options``)."""
    from calikd.experiments.report import sweep_report
    from calikd.experiments.runner import run_sweep
    from calikd.experiments.spec import parse_spec

    repro = get_reproduction(name)
    spec = parse_spec(build_spec(name, preset, smoke=smoke, out=out))
    outcome = run_sweep(spec, db_path=db_path, workers=workers, log=log, **sweep_options)

    def claim(doc: Any, results: SweepResults) -> None:
        doc.heading("The claim", 2)
        doc.bullet_list(
            [
                f"**Paper:** {repro.paper}",
                f"**Claim:** {repro.claim}",
                f"**Their number:** {repro.their_number}",
                f"**Preset:** {preset}" + (" (smoke: tiny synthetic data)" if smoke else ""),
            ]
        )
        rows = repro.verdict(results)
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
