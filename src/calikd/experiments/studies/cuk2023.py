"""Čuk, Senge, Lauri & Frintrop 2023: cross-quality KD, a teacher that sees full-resolution images teaching
a student that sees low-resolution ones.

Student resolutions x distillation temperatures, the teacher fed full- or low-resolution images; our
numbers: the rank correlation of tau with the student's entropy, ECE and accuracy per resolution and view.
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
from calikd.experiments.studies.base import correlate_or_reason, finite_mean, students
from calikd.experiments.studies.registry import Study, register_study


@register_study("cuk2023")
class Cuk2023(Study):
    """Cross-quality KD: student resolutions x teacher temperatures, the teacher fed full- or low-resolution
    images; the Hinton loss as in the thesis code ((1 - w) CE + w T^2 KL, w = 0.5)."""

    paper = "Čuk, Senge, Lauri, Frintrop 2023, arXiv 2304.07593"
    claim = (
        "In cross-quality KD a hotter teacher temperature raises the student's entropy, lowers its "
        "calibration error and raises its accuracy."
    )
    their_number = "qualitative (ImageNet, ResNet-50 -> ResNet-18 at 28-168 px)"

    def build(self, preset: str) -> dict[str, Any]:
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
        return {  # the zoo's cnn teaches full-resolution and low-resolution students
            **full_data(),
            "teacher_floors": FULL_FLOORS,
            "teachers": zoo("cnn"),
            "teacher_defaults": CPU,
            "calibrations": ["none"],
            "methods": ["ce", kd],
            "students": ["cnn_small"],
            "student_resolutions": [14, 7],
            "teacher_inputs": ["full", "low"],
            "taus": [1.0, 2.0, 4.0, 10.0, 20.0],
            "seeds": [0, 1, 2],
            "distill": {"epochs": FULL_STUDENT_EPOCHS, **CPU},
        }

    def verdict(self, results: SweepResults) -> list[tuple[str, str]]:
        rows = []
        for resolution in sorted({r.config["student_resolution"] for r in results.students} - {None}):
            for view in ("full", "low"):
                runs = [
                    r
                    for r in students(results, method="kd", student_resolution=resolution, teacher_input=view)
                    if r.config.get("tau") is not None
                ]
                taus = sorted({r.config["tau"] for r in runs})
                if len(taus) < 3:
                    continue
                for metric in ("entropy", "ece", "accuracy"):
                    ys = [
                        finite_mean(
                            [r.metrics.get(f"student_test_{metric}") for r in runs if r.config["tau"] == t]
                        )
                        for t in taus
                    ]
                    c = correlate_or_reason(taus, ys, n_boot=500)
                    value = c if isinstance(c, str) else f"{c.spearman_rho:+.3f}"
                    rows.append(
                        (
                            f"res {resolution:g}, teacher input {view}: Spearman rho(tau, student {metric})",
                            f"{value} over tau = {', '.join(f'{t:g}' for t in taus)}",
                        )
                    )
        return rows
