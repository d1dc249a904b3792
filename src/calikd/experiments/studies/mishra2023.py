"""Mishra, Krishna & Mishra 2023: does augmentation inside KD give a calibrated student from an uncalibrated
teacher?

KD, RKD and CRD, each with none / cutout / mixup / CutMix / AugMix; our numbers: each augmentation minus none,
per method, on clean test data and (where the sweep has it) under corruption.
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
from calikd.experiments.studies.base import paired
from calikd.experiments.studies.registry import Study, register_study

AUGMENTS = ("none", "cutout", "mixup", "cutmix", "augmix")


@register_study("mishra2023")
class Mishra2023(Study):
    """KD, RKD and CRD (CRD in the `paper` preset only), each with none / cutout / mixup / CutMix / AugMix,
    from an uncalibrated teacher."""

    paper = "Mishra, Krishna, Mishra 2023, arXiv 2302.11472"
    claim = (
        "Augmentation inside KD (cutout, mixup, CutMix, AugMix) gives a calibrated student from an "
        "uncalibrated teacher without losing accuracy, also with RKD and CRD."
    )
    their_number = "WRN-40-2 -> ShuffleNetV1, CIFAR-100: KD 71.05% / ECE 0.108; KD+CutMix 74.94% / ECE 0.046"

    def build(self, preset: str) -> dict[str, Any]:
        augments = list(AUGMENTS)
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
                # no augmentation, no weight decay, trained to convergence; cnn_small rather than cnn keeps
                # the KD students' teacher passes cheap enough for 10 minutes (with cnn: 9 min 52 s)
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
        return {  # an over-confident teacher of the zoo (no weight decay, no augmentation, 25 epochs)
            **full_data(),
            "teacher_floors": FULL_FLOORS,
            "teachers": zoo("cnn_small_nowd"),
            "teacher_defaults": CPU,
            "calibrations": ["none"],
            # CRD is in the `paper` preset only: on 2 CPU cores a CRD student trains ~7x slower than a KD one
            # (teacher features every step, two memory banks), which would not fit the presets' time budgets
            "methods": ["ce", "kd", "rkd"],
            "students": ["cnn_small"],
            "kd_augments": augments,
            "seeds": [0, 1, 2],
            "distill": {"epochs": FULL_STUDENT_EPOCHS, **CPU},
            # every teacher and student also on Fashion-MNIST-C (the 15 benchmark corruptions, 5 severities)
            "robustness": {"corruptions": "benchmark", "test_subset": 2000, "seed": 0},
        }

    def verdict(self, results: SweepResults) -> list[tuple[str, str]]:
        rows = []
        robust = any("student_corrupt_ece" in r.metrics for r in results.students)
        metrics = [("ece", "test"), ("accuracy", "test")]
        if robust:
            metrics += [("ece", "corrupt"), ("accuracy", "corrupt")]
        for method in sorted({r.config["method"] for r in results.students}):
            for augment in AUGMENTS[1:]:
                for metric, where in metrics:
                    shown = f"student {metric}" + (" under corruption" if where == "corrupt" else "")
                    rows.append(
                        (
                            f"{method} + {augment} minus {method}: {shown}",
                            paired(
                                results,
                                f"student_{where}_{metric}",
                                {"method": method, "kd_augment": "none"},
                                {"method": method, "kd_augment": augment},
                            ),
                        )
                    )
        return rows
