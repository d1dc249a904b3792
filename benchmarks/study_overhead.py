"""How much of a small sweep's wall time goes into training loops (issue 15: per-run overhead <= 10%).

One teacher, calibrated once, then a few KD students of it (raw and calibrated teacher, with and without
seeded CutMix), all in one `run_sweep` in this process; prints Σ(training-loop time) / wall time, the
overhead share, the teacher-logit cache hits and the CPU model.

    .venv/bin/python benchmarks/study_overhead.py                       # synthetic data, seconds
    .venv/bin/python benchmarks/study_overhead.py --dataset fashion-mnist --train-subset 5000 --epochs 3

Everything is written under a fresh temporary folder (or ``--out``, which must not hold an earlier run:
finished runs would be skipped and the ratio would measure nothing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from calikd.engine.probe_cache import cpu_model
from calikd.experiments import parse_spec, run_sweep
from calikd.results import ResultsStore


def sweep_dict(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The benchmark's sweep: one teacher, 2 calibrations x 2 augmentations x ``--seeds`` students."""
    if args.dataset == "synthetic":
        options: dict[str, Any] = {"train_size": args.train_subset or 2000, "test_size": 500}
    else:
        options = {"train_subset": args.train_subset} if args.train_subset else {}
    common = {"batch_size": args.batch_size, "precision": "fp32", "device": "cpu"}
    return {
        "name": "study-overhead",
        "out": str(out / "sweep"),
        "dataset": args.dataset,
        "dataset_options": options,
        "teachers": [{"name": "teacher", "model": args.teacher, "epochs": args.teacher_epochs}],
        "teacher_defaults": common,
        "calibrations": ["none", "temperature"],
        "methods": ["kd"],
        "students": [args.student],
        "kd_augments": ["none", "cutmix"],
        "seeds": list(range(args.seeds)),
        "distill": {"epochs": args.epochs, **common},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="synthetic", help="synthetic or fashion-mnist")
    parser.add_argument("--train-subset", type=int, default=None, help="training images (stratified)")
    parser.add_argument("--teacher", default="cnn_small")
    parser.add_argument("--student", default="cnn")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="student epochs")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=None, help="folder for the sweep (default: a temporary one)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="study-overhead-") as tmp:
        out = Path(args.out or tmp)
        spec = parse_spec(sweep_dict(args, out))
        db = str(out / "calikd.db")
        outcome = run_sweep(spec, db_path=db, log=print)
        with ResultsStore(db) as store:
            runs = store.list_runs(sweep=spec.name)
        timing = outcome.timing
        assert timing is not None
        print()
        for run in runs:
            loop = run.metrics.get("train_loop_seconds")
            hits = run.metrics.get("teacher_cache_hits")
            cache = f", cache hits {hits:.0f}" if hits is not None else ""
            loop_text = f"{loop:6.1f} s" if loop is not None else "     -  "
            print(f"{run.kind:<9} {run.name:<40} run {run.wall_time_s or 0:6.1f} s, loop {loop_text}{cache}")
        print(f"\n{timing.line()}")
        if timing.ratio is not None and timing.overhead is not None:
            ratio = timing.ratio
            print(
                f"ratio Σ(training loops) / wall = {ratio:.3f}; evaluation runs "
                f"{timing.evaluation_ratio:.1%}; overhead {timing.overhead:.1%} (inside the runs "
                f"{timing.inside_runs or 0.0:.1%}, workers idle {timing.idle or 0.0:.1%})"
            )
        if not outcome.ok:
            raise SystemExit("failed runs: " + "; ".join(outcome.failed))


if __name__ == "__main__":
    main()
