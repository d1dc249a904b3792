"""The CRD benchmark (Tian, Krishnan & Isola, ICLR 2020): distillation methods on the four classic CIFAR-100
teacher/student pairs, each method's published top-1 next to calikd's number (``calikd reproduce tian2020``).

- ``paper``: CIFAR-100, the CRD recipe (240 epochs, SGD lr 0.05, batch 64, decay at 150/180/210), the four
  pairs (``pairs`` in the sweep: each teacher with its own student only), every method of :data:`METHODS` with
  the authors' per-pair values (``method_preset: paper``), 3 seeds. Meant for a GPU: the teachers are trained
  here with the same recipe (the papers start from RepDistiller's released teachers), so the teacher rows say
  how close ours came.
- ``full``: on this CPU, Fashion-MNIST: a ResNet-20 teacher and a ``cnn`` student, every method, 3 seeds.
- ``quick``: Fashion-MNIST, a ``cnn`` teacher and a ``cnn_tiny`` student, the logit methods, one seed.

The published numbers (:data:`PUBLISHED`) were read from the sources named with each (repository, file and
commit); a cell without a number was not found in them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from calikd.analysis import mean_std, paired_difference
from calikd.experiments.presets import (
    CPU,
    CRD_RECIPE,
    FULL_FLOORS,
    QUICK_CONVERGED_SUBSET,
    QUICK_FLOORS,
    cifar100,
    fmnist,
)
from calikd.experiments.report import SweepResults

PAIRS = (
    ("resnet32x4", "resnet8x4"),
    ("wrn_40_2", "wrn_16_2"),
    ("resnet56", "resnet20"),
    ("vgg13", "vgg8"),
)
LOGIT_METHODS = ("kd", "dkd", "dist", "mlkd", "ls", "nkd", "ctkd", "ttm", "wttm", "rld")
FEATURE_METHODS = (
    "fitnet",
    "at",
    "sp",
    "cc",
    "vid",
    "rkd",
    "pkt",
    "ab",
    "ft",
    "nst",
    "crd",
    "ofd",
    "reviewkd",
    "catkd",
    "kdpp",
    "sdd",
)
METHODS = (*LOGIT_METHODS, *FEATURE_METHODS)

#: ``{"teacher->student": {"teacher": top1, "student": top1, method: top1}}`` with :data:`SOURCES`
PUBLISHED: dict[str, dict[str, float]] = {}
#: where each published number comes from: ``{"teacher->student": {method: source}}``
SOURCES: dict[str, dict[str, str]] = {}


def build(preset: str) -> dict[str, Any]:
    """The sweep of the benchmark at ``preset`` (see the module docstring)."""
    if preset == "paper":
        return {
            **cifar100(),
            "teachers": [{"name": t, "model": t} for t, _ in PAIRS],
            "teacher_defaults": CRD_RECIPE,
            "calibrations": ["none"],
            "methods": ["ce", *METHODS],
            "students": [s for _, s in PAIRS],
            "pairs": [{"teacher": t, "student": s} for t, s in PAIRS],
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
            "methods": ["ce", *LOGIT_METHODS],
            "students": ["cnn_tiny"],
            "seeds": [0],
            "distill": {"epochs": 10, **CPU},
        }
    return {
        **fmnist("full", QUICK_CONVERGED_SUBSET),
        "teachers": [{"name": "resnet20", "model": "resnet20"}],
        "teacher_defaults": {"epochs": 15, **CPU},
        "teacher_floors": FULL_FLOORS,
        "calibrations": ["none"],
        "methods": ["ce", *METHODS],
        "students": ["cnn"],
        "seeds": [0, 1, 2],
        "distill": {"epochs": 12, **CPU},
    }


def _cell(values: list[float]) -> str:
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.2f} ± {std:.2f} (n = {len(values)})"


def verdict(results: SweepResults) -> list[tuple[str, str]]:
    """Per pair and method: the published top-1, ours (mean ± std over seeds, %) and ours minus plain KD
    paired over seeds (95% CI, MDE at 80% power)."""
    runs: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for run in results.students:
        accuracy = run.metrics.get("student_test_accuracy")
        if accuracy is None:
            continue
        cfg = run.config
        teacher = results.teacher_name(cfg.get("teacher")) if cfg.get("teacher") else None
        runs[(teacher or "—", cfg["student"])][cfg["method"]][cfg["seed"]] = accuracy
    alone = {student: methods.get("ce", {}) for (_, student), methods in runs.items()}
    rows = []
    for (teacher, student), methods in sorted(runs.items()):
        if teacher == "—":
            continue
        pair = f"{teacher}->{student}"
        published = PUBLISHED.get(pair, {})
        teacher_run = next(
            (r for p, r in results.teachers.items() if results.teacher_name(p) == teacher), None
        )
        ours_teacher = teacher_run.metrics.get("test_raw_accuracy") if teacher_run else None
        rows.append(
            (
                f"{pair}: teacher",
                f"published {published.get('teacher', '—')}; ours "
                + (f"{100 * ours_teacher:.2f}" if ours_teacher is not None else "—"),
            )
        )
        if alone.get(student):
            rows.append(
                (
                    f"{pair}: student alone",
                    f"published {published.get('student', '—')}; ours {_cell(list(alone[student].values()))}",
                )
            )
        kd = methods.get("kd", {})
        for method in sorted(methods, key=lambda m: (m != "kd", m)):
            if method == "ce":
                continue
            seeds = methods[method]
            text = f"published {published.get(method, '—')}; ours {_cell(list(seeds.values()))}"
            shared = sorted(set(seeds) & set(kd))
            if method != "kd" and len(shared) >= 2:
                d = paired_difference([100 * kd[s] for s in shared], [100 * seeds[s] for s in shared])
                text += f"; minus KD {d.mean:+.2f} [95% CI {d.ci[0]:+.2f}, {d.ci[1]:+.2f}], MDE {d.mde:.2f}"
            rows.append((f"{pair}: {method}", text))
    return rows
