"""Song & Yang 2021: do larger teachers teach better once they are temperature-scaled?

Teachers of increasing size, uncalibrated vs temperature-scaled, one student; our numbers: the rank
correlation of teacher size with student accuracy per teacher calibration, and calibrated minus uncalibrated.
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
    ladder,
)
from calikd.experiments.report import SweepResults
from calikd.experiments.studies.base import (
    by_teacher,
    checkpoint_size,
    correlate_or_reason,
    paired,
    students,
)
from calikd.experiments.studies.registry import Study, register_study


@register_study("song2021")
class Song2021(Study):
    """Teachers of increasing size, uncalibrated vs temperature-scaled, one student."""

    paper = "Song & Yang 2021, arXiv 2111.01684"
    claim = (
        "Larger teachers are over-confident and teach worse; after temperature scaling, teacher size "
        "correlates positively with student accuracy."
    )
    their_number = "qualitative (student accuracy vs teacher size, CIFAR-10 / Fashion-MNIST)"

    def build(self, preset: str) -> dict[str, Any]:
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
                # widths 8, 16, 32: 16x the parameters from the first to the last (cnn_medium costs too much)
                "teachers": [{"name": m, "model": m} for m in ("cnn_tiny", "cnn_small", "cnn")],
                "teacher_defaults": {"epochs": 8, "augment": False, "weight_decay": 0.0, **CPU},
                "teacher_floors": QUICK_FLOORS,
                "calibrations": ["none", "temperature"],
                "methods": ["kd"],
                "students": ["cnn_tiny"],
                "seeds": [0],
                "distill": {"epochs": 12, **CPU},
            }
        return {  # teachers growing in size with one recipe (the zoo's, no augmentation, one schedule)
            **full_data(),
            "teachers": ladder("cnn_tiny", "cnn_small", "cnn"),
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
        for calibration in ("none", "temperature"):
            accs = by_teacher(students(results, method="kd", teacher_calibration=calibration))
            if len(accs) < 3:
                continue
            c = correlate_or_reason([checkpoint_size(p) for p in accs], list(accs.values()))
            value = (
                c
                if isinstance(c, str)
                else f"{c.spearman_rho:+.3f} (Pearson r {c.pearson_r:+.3f}, n = {c.n})"
            )
            rows.append(
                (f"Spearman rho(teacher size, student accuracy), teacher calibration {calibration}", value)
            )
        rows.append(
            (
                "student accuracy, calibrated minus uncalibrated teacher",
                paired(
                    results,
                    "student_test_accuracy",
                    {"teacher_calibration": "none"},
                    {"teacher_calibration": "temperature"},
                ),
            )
        )
        return rows
