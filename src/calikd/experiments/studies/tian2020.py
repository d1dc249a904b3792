"""The CRD benchmark (Tian, Krishnan & Isola, ICLR 2020): distillation methods on the four classic CIFAR-100
teacher/student pairs, each method's published top-1 next to calikd's number (``calikd reproduce tian2020``).

- ``paper``: CIFAR-100, the CRD recipe (240 epochs, SGD lr 0.05, batch 64, decay at 150/180/210), the four
  pairs (``pairs`` in the sweep: each teacher with its own student only), every method of :data:`METHODS` with
  the authors' per-pair values (``method_preset: paper``), 3 seeds. Meant for a GPU: the teachers are trained
  here with the same recipe (the papers start from RepDistiller's released teachers), so the teacher rows say
  how close ours came.
- ``full``: on this CPU, Fashion-MNIST: a ResNet-20 teacher trained on the whole training split (as the
  ``full`` zoo), ``cnn`` students on its 10,000-image stratified subset, every method, 3 seeds,
  ``FULL_STUDENT_EPOCHS`` epochs (CAT-KD with :data:`FULL_OPTIONS`).
- ``quick``: Fashion-MNIST, a ``cnn`` teacher and a ``cnn_tiny`` student, the logit methods, one seed.

The published numbers (:data:`PUBLISHED`) were read from the sources named with each (repository, file and
commit); a cell without a number was not found in them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from calikd.analysis import format_mean_std, mean_std, paired_difference
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
)
from calikd.experiments.report import SweepResults
from calikd.experiments.studies.registry import Study, register_study
from calikd.results import RunRecord

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
#: ``full`` (Fashion-MNIST, ResNet-20 -> cnn): CAT-KD with the authors' weight for their ResNet pair
#: resnet56 -> resnet20 (0.7); its default 15 (resnet32x4 -> resnet8x4) diverged at lr 0.1 in the first epoch
#: of a cnn_small -> cnn check here, before the run (docs/results-distillation.md)
FULL_OPTIONS = {"catkd": {"kd_weight": 0.7}}

#: ``{"teacher->student": {"teacher": top1, "student": top1, method: top1}}``: teacher and student-alone rows
#: from RepDistiller's README (the same in the TTM, DIST and KD++ repositories), methods as in :data:`SOURCES`
#: ("quoted there": the method's own repository has no table for the pair; another repository quotes it).
PUBLISHED: dict[str, dict[str, float]] = {
    "resnet32x4->resnet8x4": {
        "teacher": 79.42,
        "student": 72.5,
        "kd": 73.33,
        "fitnet": 73.5,
        "at": 73.44,
        "sp": 72.94,
        "cc": 72.97,
        "vid": 73.09,
        "rkd": 71.9,
        "pkt": 73.64,
        "ab": 73.17,
        "ft": 72.86,
        "nst": 73.3,
        "crd": 75.51,
        "dkd": 76.32,
        "reviewkd": 75.63,
        "ofd": 74.95,
        "dist": 76.31,
        "mlkd": 77.08,
        "ctkd": 73.39,
        "kdpp": 75.54,
        "ttm": 76.17,
        "wttm": 76.06,
        "ls": 76.62,
    },
    "wrn_40_2->wrn_16_2": {
        "teacher": 75.61,
        "student": 73.26,
        "kd": 74.92,
        "fitnet": 73.58,
        "at": 74.08,
        "sp": 73.83,
        "cc": 73.56,
        "vid": 74.11,
        "rkd": 73.35,
        "pkt": 74.54,
        "ab": 72.5,
        "ft": 73.25,
        "nst": 73.68,
        "crd": 75.48,
        "dkd": 76.23,
        "dist": 75.51,
        "mlkd": 76.63,
        "ctkd": 75.45,
        "ttm": 76.23,
        "wttm": 76.37,
        "ls": 76.11,
    },
    "resnet56->resnet20": {
        "teacher": 72.34,
        "student": 69.06,
        "kd": 70.66,
        "fitnet": 69.21,
        "at": 70.55,
        "sp": 69.67,
        "cc": 69.63,
        "vid": 70.38,
        "rkd": 69.61,
        "pkt": 70.34,
        "ab": 69.47,
        "ft": 69.84,
        "nst": 69.6,
        "crd": 71.16,
        "dkd": 71.97,
        "reviewkd": 71.89,
        "ofd": 70.98,
        "dist": 71.75,
        "mlkd": 72.19,
        "ctkd": 71.19,
        "kdpp": 72.53,
        "ttm": 71.83,
        "wttm": 71.92,
        "ls": 71.43,
    },
    "vgg13->vgg8": {
        "teacher": 74.64,
        "student": 70.36,
        "kd": 72.98,
        "fitnet": 71.02,
        "at": 71.43,
        "sp": 72.68,
        "cc": 70.71,
        "vid": 71.23,
        "rkd": 71.48,
        "pkt": 72.88,
        "ab": 70.94,
        "ft": 70.58,
        "nst": 71.53,
        "crd": 73.94,
        "dkd": 74.68,
        "dist": 73.89,
        "mlkd": 75.18,
        "ctkd": 73.52,
        "ttm": 74.33,
        "wttm": 74.44,
        "ls": 74.36,
    },
}
SOURCES: dict[str, dict[str, str]] = {
    "resnet32x4->resnet8x4": {
        "kd": "HobbitLong/RepDistiller README.md@b84f547",
        "fitnet": "HobbitLong/RepDistiller README.md@b84f547",
        "at": "HobbitLong/RepDistiller README.md@b84f547",
        "sp": "HobbitLong/RepDistiller README.md@b84f547",
        "cc": "HobbitLong/RepDistiller README.md@b84f547",
        "vid": "HobbitLong/RepDistiller README.md@b84f547",
        "rkd": "HobbitLong/RepDistiller README.md@b84f547",
        "pkt": "HobbitLong/RepDistiller README.md@b84f547",
        "ab": "HobbitLong/RepDistiller README.md@b84f547",
        "ft": "HobbitLong/RepDistiller README.md@b84f547",
        "nst": "HobbitLong/RepDistiller README.md@b84f547",
        "crd": "HobbitLong/RepDistiller README.md@b84f547",
        "dkd": "megvii-research/mdistiller README.md@a08d46f",
        "reviewkd": "WangYZ1608/Knowledge-Distillation-via-ND README.md@fc6f3f9 (quoted there)",
        "ofd": "WangYZ1608/Knowledge-Distillation-via-ND README.md@9e63f46 (quoted there)",
        "dist": "hunto/DIST_KD README.md@2418f18",
        "mlkd": "sunshangquan/logit-standardization-KD README.md@f6e5aa5 (quoted there)",
        "ctkd": "sunshangquan/logit-standardization-KD README.md@f6e5aa5 (quoted there)",
        "kdpp": "WangYZ1608/Knowledge-Distillation-via-ND README.md@fc6f3f9",
        "ttm": "zkxufo/TTM README.md@fe457b3",
        "wttm": "zkxufo/TTM README.md@fe457b3",
        "ls": "sunshangquan/logit-standardization-KD README.md@f6e5aa5",
    },
    "wrn_40_2->wrn_16_2": {
        "kd": "HobbitLong/RepDistiller README.md@b84f547",
        "fitnet": "HobbitLong/RepDistiller README.md@b84f547",
        "at": "HobbitLong/RepDistiller README.md@b84f547",
        "sp": "HobbitLong/RepDistiller README.md@b84f547",
        "cc": "HobbitLong/RepDistiller README.md@b84f547",
        "vid": "HobbitLong/RepDistiller README.md@b84f547",
        "rkd": "HobbitLong/RepDistiller README.md@b84f547",
        "pkt": "HobbitLong/RepDistiller README.md@b84f547",
        "ab": "HobbitLong/RepDistiller README.md@b84f547",
        "ft": "HobbitLong/RepDistiller README.md@b84f547",
        "nst": "HobbitLong/RepDistiller README.md@b84f547",
        "crd": "HobbitLong/RepDistiller README.md@b84f547",
        "dkd": "megvii-research/mdistiller README.md@a08d46f",
        "dist": "zkxufo/TTM README.md@fe457b3 (quoted there)",
        "mlkd": "sunshangquan/logit-standardization-KD README.md@f6e5aa5 (quoted there)",
        "ctkd": "zhengli97/CTKD README.md@7d52522",
        "ttm": "zkxufo/TTM README.md@fe457b3",
        "wttm": "zkxufo/TTM README.md@fe457b3",
        "ls": "sunshangquan/logit-standardization-KD README.md@f6e5aa5",
    },
    "resnet56->resnet20": {
        "kd": "HobbitLong/RepDistiller README.md@b84f547",
        "fitnet": "HobbitLong/RepDistiller README.md@b84f547",
        "at": "HobbitLong/RepDistiller README.md@b84f547",
        "sp": "HobbitLong/RepDistiller README.md@b84f547",
        "cc": "HobbitLong/RepDistiller README.md@b84f547",
        "vid": "HobbitLong/RepDistiller README.md@b84f547",
        "rkd": "HobbitLong/RepDistiller README.md@b84f547",
        "pkt": "HobbitLong/RepDistiller README.md@b84f547",
        "ab": "HobbitLong/RepDistiller README.md@b84f547",
        "ft": "HobbitLong/RepDistiller README.md@b84f547",
        "nst": "HobbitLong/RepDistiller README.md@b84f547",
        "crd": "HobbitLong/RepDistiller README.md@b84f547",
        "dkd": "megvii-research/mdistiller README.md@a08d46f",
        "reviewkd": "WangYZ1608/Knowledge-Distillation-via-ND README.md@fc6f3f9 (quoted there)",
        "ofd": "WangYZ1608/Knowledge-Distillation-via-ND README.md@9e63f46 (quoted there)",
        "dist": "hunto/DIST_KD README.md@2418f18",
        "mlkd": "sunshangquan/logit-standardization-KD README.md@f6e5aa5 (quoted there)",
        "ctkd": "zhengli97/CTKD README.md@7d52522",
        "kdpp": "WangYZ1608/Knowledge-Distillation-via-ND README.md@fc6f3f9",
        "ttm": "zkxufo/TTM README.md@fe457b3",
        "wttm": "zkxufo/TTM README.md@fe457b3",
        "ls": "sunshangquan/logit-standardization-KD README.md@f6e5aa5",
    },
    "vgg13->vgg8": {
        "kd": "HobbitLong/RepDistiller README.md@b84f547",
        "fitnet": "HobbitLong/RepDistiller README.md@b84f547",
        "at": "HobbitLong/RepDistiller README.md@b84f547",
        "sp": "HobbitLong/RepDistiller README.md@b84f547",
        "cc": "HobbitLong/RepDistiller README.md@b84f547",
        "vid": "HobbitLong/RepDistiller README.md@b84f547",
        "rkd": "HobbitLong/RepDistiller README.md@b84f547",
        "pkt": "HobbitLong/RepDistiller README.md@b84f547",
        "ab": "HobbitLong/RepDistiller README.md@b84f547",
        "ft": "HobbitLong/RepDistiller README.md@b84f547",
        "nst": "HobbitLong/RepDistiller README.md@b84f547",
        "crd": "HobbitLong/RepDistiller README.md@b84f547",
        "dkd": "megvii-research/mdistiller README.md@a08d46f",
        "dist": "zkxufo/TTM README.md@fe457b3 (quoted there)",
        "mlkd": "sunshangquan/logit-standardization-KD README.md@f6e5aa5 (quoted there)",
        "ctkd": "zhengli97/CTKD README.md@7d52522",
        "ttm": "zkxufo/TTM README.md@fe457b3",
        "wttm": "zkxufo/TTM README.md@fe457b3",
        "ls": "sunshangquan/logit-standardization-KD README.md@f6e5aa5",
    },
}


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
    # issue 19's table: a converged teacher on the whole split; 81 students on a subset, to fit ~2 hours
    return {
        **full_data(),
        "teachers": [{"name": "resnet20", "model": "resnet20"}],
        "teacher_defaults": {"epochs": 15, **CPU},
        "teacher_floors": FULL_FLOORS,
        "calibrations": ["none"],
        "methods": ["ce", *(_with_options(m, FULL_OPTIONS) for m in METHODS)],
        "students": ["cnn"],
        "seeds": [0, 1, 2],
        "distill": {"epochs": FULL_STUDENT_EPOCHS, **CPU},
    }


def _with_options(method: str, options: dict[str, dict[str, Any]]) -> str | dict[str, Any]:
    return {"method": method, "options": options[method]} if method in options else method


def _cell(values: list[float]) -> str:
    return f"{format_mean_std(*mean_std(values), digits=2, scale=100)} (n = {len(values)})"


def _metric(seeds: dict[int, RunRecord], name: str) -> list[float]:
    return [v for r in seeds.values() if (v := r.metrics.get(name)) is not None]


def _describe(seeds: dict[int, RunRecord], published: Any) -> str:
    """``published 73.3; ours 91.20 ± 0.10 (n = 3); ECE 1.23 ± 0.05, NLL 0.250 ± 0.004; 3/3 converged; 85 s
    per run`` (accuracy and ECE in %)."""
    text = f"published {published}; ours {_cell(_metric(seeds, 'student_test_accuracy'))}"
    ece, nll = _metric(seeds, "student_test_ece"), _metric(seeds, "student_test_nll")
    if ece and nll:
        ece_text = format_mean_std(*mean_std(ece), digits=2, scale=100)
        text += f"; ECE {ece_text}, NLL {format_mean_std(*mean_std(nll), digits=3)}"
    converged = _metric(seeds, "converged")
    if converged:
        text += f"; {sum(c == 1 for c in converged)}/{len(converged)} converged"
    walls = [r.wall_time_s for r in seeds.values() if r.wall_time_s is not None]
    if walls:
        text += f"; {sum(walls) / len(walls):.0f} s per run"
    return text


def _minus_kd(seeds: dict[int, RunRecord], kd: dict[int, RunRecord], name: str, label: str) -> str:
    shared = [
        s
        for s in sorted(set(seeds) & set(kd))
        if None not in (seeds[s].metrics.get(name), kd[s].metrics.get(name))
    ]
    if len(shared) < 2:
        return ""
    d = paired_difference(
        [100 * kd[s].metrics[name] for s in shared], [100 * seeds[s].metrics[name] for s in shared]
    )
    return f"; {label} minus KD {d.mean:+.2f} [95% CI {d.ci[0]:+.2f}, {d.ci[1]:+.2f}], MDE {d.mde:.2f}"


def verdict(results: SweepResults) -> list[tuple[str, str]]:
    """Per pair and method: the published top-1; ours (test accuracy and ECE in %, NLL, as mean ± std over
    seeds), convergence and wall time per run; accuracy and ECE minus plain KD, paired over seeds (95% CI, MDE
    at 80% power)."""
    runs: dict[tuple[str, str], dict[str, dict[int, RunRecord]]] = defaultdict(lambda: defaultdict(dict))
    for run in results.students:
        if run.metrics.get("student_test_accuracy") is None:
            continue
        cfg = run.config
        teacher = results.teacher_name(cfg.get("teacher")) if cfg.get("teacher") else None
        runs[(teacher or "—", cfg["student"])][cfg["method"]][cfg["seed"]] = run
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
            rows.append((f"{pair}: student alone", _describe(alone[student], published.get("student", "—"))))
        kd = methods.get("kd", {})
        for method in sorted(methods, key=lambda m: (m != "kd", m)):
            if method == "ce":
                continue
            seeds = methods[method]
            text = _describe(seeds, published.get(method, "—"))
            if method != "kd":
                text += _minus_kd(seeds, kd, "student_test_accuracy", "accuracy")
                text += _minus_kd(seeds, kd, "student_test_ece", "ECE")
            rows.append((f"{pair}: {method}", text))
    return rows


@register_study("tian2020")
class Tian2020(Study):
    """The CRD benchmark: every method on the four CIFAR-100 pairs, the published top-1 beside ours."""

    paper = "Tian, Krishnan, Isola 2020 (CRD benchmark), arXiv 1910.10699"
    claim = (
        "The CRD benchmark: distillation methods on four CIFAR-100 teacher/student pairs (resnet32x4 -> "
        "resnet8x4, wrn_40_2 -> wrn_16_2, resnet56 -> resnet20, vgg13 -> vgg8); each method's published "
        "top-1 next to ours."
    )
    their_number = "the published top-1 of each method and pair, in the table below"

    def build(self, preset: str) -> dict[str, Any]:
        return build(preset)

    def verdict(self, results: SweepResults) -> list[tuple[str, str]]:
        return verdict(results)
