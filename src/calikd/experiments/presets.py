"""Shared pieces of the reproductions' presets: datasets, recipes, subsets and teacher floors."""

from __future__ import annotations

from typing import Any

PRESETS = ("quick", "full", "paper")
FULL_SUBSET = 10000  # stratified Fashion-MNIST training subset of the `full` presets
QUICK_CONVERGED_SUBSET = 20000  # quick teachers need it to reach their floors in 8-10 epochs
# least test accuracy of a teacher (issue 15's protocol): MLPs 87% / 88%, conv nets 88% / 91%
QUICK_FLOORS = {"mlp*": 0.87, "*": 0.88}
FULL_FLOORS = {"mlp*": 0.88, "*": 0.91}
CPU = {"batch_size": 128}
# the CRD benchmark's CIFAR-100 recipe (RepDistiller), used by the `paper` presets
CRD_RECIPE = {
    "epochs": 240,
    "batch_size": 64,
    "lr": 0.05,
    "schedule": "multistep",
    "milestones": [150, 180, 210],
    "gamma": 0.1,
    "weight_decay": 5e-4,
    "momentum": 0.9,
    "nesterov": False,
}


def fmnist(preset: str, subset: int | None) -> dict[str, Any]:
    options = {"train_subset": subset} if subset else {}
    return {"dataset": "fashion-mnist", "dataset_options": options}


def cifar100() -> dict[str, Any]:
    return {"dataset": "cifar100", "dataset_options": {}}
