"""Kim, Park, Lee & Kwak 2025: does a teacher's calibration error predict its student's accuracy?

A zoo of teachers varied in architecture, size and recipe; students from each, uncalibrated and calibrated;
our numbers: R² of each teacher metric against student accuracy, and calibrated minus uncalibrated per method.
"""

from __future__ import annotations

from typing import Any

from calikd.experiments.presets import (
    CPU,
    CRD_RECIPE,
    FULL_FLOORS,
    FULL_STUDENT_EPOCHS,
    QUICK_CONVERGED_SUBSET,
    QUICK_FLOORS,
    cifar100,
    fmnist,
    full_data,
    zoo,
)
from calikd.experiments.report import SweepResults
from calikd.experiments.studies.base import by_teacher, correlate_or_reason, paired, students
from calikd.experiments.studies.registry import Study, register_study

PAPER_ZOO = (
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
)


def quick() -> dict[str, Any]:
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


@register_study("kim2025")
class Kim2025(Study):
    """A zoo of >= 10 teachers varied in architecture, size and recipe; students from each, uncalibrated and
    calibrated (and, beyond quick, on top of DKD and logit standardisation)."""

    paper = "Kim, Park, Lee, Kwak 2025, arXiv 2508.20224"
    claim = (
        "A teacher's calibration error predicts student accuracy better than its accuracy does; "
        "temperature-scaling the teacher improves students, also on top of DKD and LS."
    )
    their_number = (
        "R² 0.92 (teacher ACE vs student accuracy) vs 0.68 (teacher accuracy), CIFAR-100, 17 teachers"
    )

    def build(self, preset: str) -> dict[str, Any]:
        if preset == "paper":
            return {
                **cifar100(),
                "teachers": [{"name": m, "model": m} for m in PAPER_ZOO],
                "teacher_defaults": CRD_RECIPE,
                "calibrations": ["none", "temperature"],
                "methods": ["kd", "dkd", "ls"],
                "students": ["wrn_16_2", "shufflenetv2"],
                "seeds": [0],
                "distill": {**CRD_RECIPE, "method_preset": "paper"},
            }
        if preset == "quick":
            return quick()
        return {  # the shared zoo of 16 teachers; kd students raw and temperature-scaled, 3 seeds
            **full_data(),
            "teachers": zoo(),
            "teacher_defaults": CPU,
            "teacher_floors": FULL_FLOORS,
            "calibrations": ["none", "temperature"],
            "methods": ["kd"],
            "students": ["cnn_tiny"],
            "seeds": [0, 1, 2],
            "distill": {"epochs": FULL_STUDENT_EPOCHS, **CPU},
        }

    def verdict(self, results: SweepResults) -> list[tuple[str, str]]:
        rows = []
        accs = by_teacher(students(results, method="kd", teacher_calibration="none"))
        paths = [p for p in accs if p in results.teachers]
        if len(paths) >= 3:
            for metric in ("ace", "accuracy", "ece", "nll"):
                xs = [results.teachers[p].metrics.get(f"test_raw_{metric}") for p in paths]
                c = correlate_or_reason(xs, [accs[p] for p in paths])
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
                    paired(
                        results,
                        "student_test_accuracy",
                        {"method": method, "teacher_calibration": "none"},
                        {"method": method, "teacher_calibration": "temperature"},
                    ),
                )
            )
        return rows
