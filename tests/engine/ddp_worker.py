"""Run by ``torchrun`` in tests/engine/test_distributed.py: one task per call, rank 0 writes JSON to ``out``.

Usage: ``torchrun --standalone --nproc_per_node=2 ddp_worker.py TASK ARGS.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from calikd.engine.distributed import Distributed, distributed_session
from calikd.metrics import calibration_report
from calikd.teacher import TeacherConfig, train_teacher


class Stop(Exception):
    """Raised on every rank at the same step to interrupt training."""


def metrics_task(args: dict) -> dict:
    """Each rank holds a contiguous shard of fixed logits; the gathered metrics must equal one process's."""
    gen = torch.Generator().manual_seed(args["seed"])
    logits = torch.randn(args["n"], args["classes"], generator=gen) * 3
    labels = torch.randint(0, args["classes"], (args["n"],), generator=gen)
    runtime = Distributed.current()
    lo, hi = runtime.shard(args["n"])
    gathered = runtime.gather_rows(logits[lo:hi]), runtime.gather_rows(labels[lo:hi])
    report = calibration_report(*gathered, n_bins=15)
    correct = runtime.sum((logits[lo:hi].argmax(1) == labels[lo:hi]).sum())
    return {
        "metrics": report.scalars(),
        "same_order": bool(torch.equal(gathered[0], logits)),
        "shard": [lo, hi],
        "summed_correct": int(correct),
    }


def teacher_task(args: dict) -> dict:
    """Train a teacher through the Python API; ``stop_at`` interrupts every rank after that step."""
    stop_at = args.pop("stop_at", None)

    def on_step(step: int) -> None:
        if step == stop_at:
            raise Stop(f"stopped at step {step}")

    result = train_teacher(TeacherConfig(**args), on_step=on_step, log=None)
    return {"test_last": result.test_last, "history": result.history, "extra": result.extra}


TASKS = {"metrics": metrics_task, "teacher": teacher_task}


def main() -> int:
    task, args_file = sys.argv[1], Path(sys.argv[2])
    args = json.loads(args_file.read_text())
    out = Path(args.pop("result"))
    with distributed_session("cpu") as runtime:
        result = TASKS[task](args)
        result["world_size"] = runtime.world_size
        if runtime.is_main:
            out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
