"""The distillation study of the closing note: student alone vs KD vs KD from a temperature-scaled teacher vs
KD + mixup vs KD + CutMix, mean +- std over seeds (Fashion-MNIST, ResNet-20 teacher -> cnn by default).

    .venv/bin/python benchmarks/kd_study.py --teacher runs/bench15/resnet20/last --epochs 8 --seeds 0 1 2

Runs are written under ``--out`` (one folder per configuration and seed); finished runs are skipped, so an
interrupted study continues where it stopped. KD uses the method's defaults (T = 4, CE 0.1, KD 0.9); the
uncalibrated and the calibrated KD runs of a seed share one disk cache of teacher logits.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from calikd.analysis import mean_std
from calikd.distill import DistillConfig, distill
from calikd.report import format_mean_std

CONFIGS: dict[str, dict[str, Any]] = {
    "student alone": {"method": "ce"},
    "KD": {"method": "kd", "teacher_calibration": "none", "teacher_cache": "disk"},
    "KD, calibrated teacher": {"method": "kd", "teacher_calibration": "temperature", "teacher_cache": "disk"},
    "KD + mixup": {"method": "kd", "teacher_calibration": "none", "kd_augment": "mixup"},
    "KD + CutMix": {"method": "kd", "teacher_calibration": "none", "kd_augment": "cutmix"},
}
METRICS = ("accuracy", "ece", "nll", "ace", "entropy")


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out) / name.replace(" ", "_").replace(",", "").replace("+", "plus") / f"s{seed}"
    report = out / "report.json"
    if report.exists():
        return json.loads(report.read_text())
    config = DistillConfig(
        teacher=args.teacher,
        student=args.student,
        epochs=args.epochs,
        seed=seed,
        out=str(out),
        overwrite=True,
        progress=False,
        cache_dir=str(Path(args.out) / "cache"),
        **CONFIGS[name],
    )
    print(f"== {name}, seed {seed}", flush=True)
    distill(config)
    return json.loads(report.read_text())


def mean_std_cell(values: list[float]) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed: :func:`calikd.analysis.mean_std`)."""
    return format_mean_std(*mean_std(values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default="runs/bench15/resnet20/last")
    parser.add_argument("--student", default="cnn")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/kd_study")
    parser.add_argument("--only", nargs="*", default=None, help="run only these configurations")
    args = parser.parse_args()
    names = args.only or list(CONFIGS)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for seed in args.seeds:  # seed-major: an interrupted study still has every configuration
        for name in names:
            results[name].append(run_one(name, seed, args))
    teacher = next(r for runs in results.values() for r in runs if r["teacher"])["teacher"]
    lines = [
        f"Teacher `{args.teacher}`; student `{args.student}`, {args.epochs} epochs, seeds {args.seeds}; "
        f"test split; mean ± std over seeds (last epoch).",
        "",
        "| configuration | " + " | ".join(METRICS) + " | img/s |",
        "|" + "---|" * (len(METRICS) + 2),
    ]
    for name, runs in results.items():
        cells = [mean_std_cell([r["student_test_last"][m] for r in runs]) for m in METRICS]
        speed = statistics.mean(r["train_images_per_s"] for r in runs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {speed:.0f} |")
    test = teacher["metrics"]["full"]["test"]
    for kind in ("raw", "calibrated"):
        if kind in test:
            cells = [f"{test[kind][m]:.4f}" for m in METRICS]
            lines.append(
                f"| teacher ({'uncalibrated' if kind == 'raw' else 'calibrated'}) | "
                + " | ".join(cells)
                + " | |"
            )
    calibrated = [r for r in results.get("KD, calibrated teacher", [])]
    if calibrated:
        lines.append(
            f"\nTeacher temperature fitted on val: T = {calibrated[0]['teacher']['temperature']:.4f}"
        )
    text = "\n".join(lines)
    print(text)
    (Path(args.out) / "results.md").write_text(text + "\n")
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
