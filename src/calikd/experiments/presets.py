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
FULL_STUDENT_EPOCHS = 12  # students of the `full` presets, on FULL_SUBSET of the teachers' split

# The `full` presets' one teacher zoo: trained on the whole Fashion-MNIST training split (val held out),
# shared by the four papers' sweeps (same configs, so the results store trains each once). Recipes fixed
# from a pilot on the full split (2026-12-06, AMD EPYC; test accuracy / fitted T): cnn no weight decay 15
# epochs 92.8% / 1.27, cnn label smoothing 0.1 92.8% / 0.60, cnn_small 15 epochs 92.2% / 1.04, mlp 20
# epochs 90.4% / 1.62. The spread comes from real mechanisms: capacity and long training without weight
# decay or augmentation (over-confident), label smoothing (under-confident). Estimated 66 min of training
# at the throughputs measured here (mlp 10.8k, mlp_large 3.9k, cnn_tiny 7.2k, cnn_small 5k, cnn 2.1k img/s).
NOAUG = {"augment": False}
FULL_ZOO = (
    {"name": "mlp", "model": "mlp", "epochs": 20, **NOAUG},
    {"name": "mlp_smooth", "model": "mlp", "epochs": 20, "label_smoothing": 0.1, **NOAUG},
    {"name": "mlp_large_nowd", "model": "mlp_large", "epochs": 20, "weight_decay": 0.0, **NOAUG},
    {"name": "mlp_large_smooth", "model": "mlp_large", "epochs": 20, "label_smoothing": 0.2, **NOAUG},
    # 30 epochs, not the pilot's 15: under the 91% floor on test at 15 (90.89%, 90.88%), retrained once with
    # the epochs doubled by the rule of docs/results.md ("A teacher under its floor")
    {"name": "cnn_tiny", "model": "cnn_tiny", "epochs": 30, **NOAUG},
    {"name": "cnn_tiny_smooth", "model": "cnn_tiny", "epochs": 30, "label_smoothing": 0.1, **NOAUG},
    {"name": "cnn_small", "model": "cnn_small", "epochs": 15, **NOAUG},
    {"name": "cnn_small_nowd", "model": "cnn_small", "epochs": 25, "weight_decay": 0.0, **NOAUG},
    {"name": "cnn_small_smooth", "model": "cnn_small", "epochs": 15, "label_smoothing": 0.1, **NOAUG},
    {"name": "cnn_small_smooth2", "model": "cnn_small", "epochs": 15, "label_smoothing": 0.2, **NOAUG},
    {"name": "cnn_small_aug", "model": "cnn_small", "epochs": 20},  # random crop and flip
    {"name": "cnn", "model": "cnn", "epochs": 15, **NOAUG},
    {"name": "cnn_nowd", "model": "cnn", "epochs": 15, "weight_decay": 0.0, **NOAUG},
    {"name": "cnn_nowd_long", "model": "cnn", "epochs": 25, "weight_decay": 0.0, **NOAUG},
    {"name": "cnn_smooth", "model": "cnn", "epochs": 12, "label_smoothing": 0.1, **NOAUG},
    {"name": "cnn_aug", "model": "cnn", "epochs": 12},  # random crop and flip
)


def zoo(*names: str) -> list[dict[str, Any]]:
    """The entries of :data:`FULL_ZOO` called ``names`` (all of them without names), as sweep teachers."""
    chosen = [dict(t) for t in FULL_ZOO if not names or t["name"] in names]
    missing = set(names) - {t["name"] for t in chosen}
    if missing:
        raise KeyError(f"not in the full zoo: {sorted(missing)}")
    return chosen


def ladder(*names: str) -> list[dict[str, Any]]:
    """The zoo entries ``names`` on one schedule, the longest among them (a teacher retrained under the floor
    rule keeps its comparison's recipe shared): an entry whose epochs change is renamed ``<name>_<E>ep``."""
    chosen = zoo(*names)
    epochs = max(t["epochs"] for t in chosen)
    return [
        t if t["epochs"] == epochs else {**t, "name": f"{t['name']}_{epochs}ep", "epochs": epochs}
        for t in chosen
    ]


def full_data() -> dict[str, Any]:
    """Teachers on the whole training split, students on a stratified FULL_SUBSET of it."""
    return {"dataset": "fashion-mnist", "dataset_options": {}, "student_train_subset": FULL_SUBSET}


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
