"""Execute one planned run inside a worker: claim it in the results store, run it, record its numbers.

A run already finished (by this or an earlier sweep process) is skipped; a run that fails is recorded as
failed with its error and does not stop the others; Ctrl-C hands the run back (pending) and stops.

The work and its recording are separate pieces, so that the Ray executor can run the work in a Ray task
and record it in the driver (which alone opens the store): :func:`run_work` runs a plan and returns a
:class:`RunResult` without touching the store; :func:`record_result` and :func:`record_failure` write a run
the caller holds as finished or failed. :func:`execute` (the local executor) is claim, heartbeat,
:func:`run_work` and one of the two.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from calikd.data import load_dataset
from calikd.data.corrupted import write_corrupted_set
from calikd.data.splits import subsample_train
from calikd.distill import DistillConfig, distill
from calikd.engine import probe_cache
from calikd.engine.robustness import evaluate_corruptions
from calikd.experiments.overhead import TRAIN_LOOP_METRIC
from calikd.experiments.plan import RunPlan
from calikd.metrics.robustness import per_severity
from calikd.report.robustness import write_robustness_report
from calikd.results import ClaimLostError, ResultsStore
from calikd.teacher import TeacherConfig, train_teacher
from calikd.teacher.calibrate import calibrate_checkpoint
from calikd.utils.config import config_from_dict

REPORT_METRICS = ("accuracy", "nll", "brier", "entropy", "ece", "ace", "mce", "oe", "classwise_ece")


def _numbers(prefix: str, values: dict[str, Any]) -> dict[str, float | None]:
    return {f"{prefix}{k}": values.get(k) for k in REPORT_METRICS if k in values}


def _convergence(record: dict[str, Any]) -> dict[str, Any]:
    """A run's convergence check as store metrics (1.0 / 0.0 flags; ranges and ratios as numbers)."""
    if not record:
        return {}
    return {
        "converged": float(record["converged"]),
        "annealed": float(record["annealed"]),
        "accuracy_range_last": record["accuracy_range"],
        "final_lr_ratio": record["final_lr_ratio"],
    }


def _existing_run(out_dir: str) -> bool:
    return (Path(out_dir) / "last.json").exists()


def run_teacher(plan: RunPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Train (or resume) a teacher; its test metrics and checkpoint paths."""
    resume = _existing_run(plan.out_dir)
    config = config_from_dict(
        TeacherConfig, {**plan.config, "out": plan.out_dir, "progress": False, "resume": resume}
    )
    result = train_teacher(config, log=None)
    metrics = {
        **_numbers("test_last_", result.test_last),
        **_numbers("test_best_", result.test_best),
        "best_epoch": result.best_epoch,
        "train_images_per_s": result.train_images_per_s,
        TRAIN_LOOP_METRIC: result.wall_time_s,
        **_convergence(result.convergence),
    }
    artifacts = {"last": str(result.checkpoint), "best": str(result.best_checkpoint)}
    return metrics, artifacts


def run_calibrate(plan: RunPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Evaluate a teacher on val and test, before and after temperature scaling fitted on val."""
    checkpoint = plan.config["checkpoint"]
    # Files go to the plan's folder: next to a teacher this sweep trained, inside the sweep for a checkpoint
    # from outside (whose own folder, and any calibrator the user stored there, is never written to). A
    # calibrator already there is this run's, written by an attempt killed before it was recorded (or copied
    # with an adopted teacher); write it again so that this attempt records the same artifacts as an
    # uninterrupted one.
    outcome = calibrate_checkpoint(checkpoint, [plan.config["method"]], out_dir=plan.out_dir)
    method = outcome.methods[0]
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if split in outcome.before:
            metrics.update(_numbers(f"{split}_raw_", outcome.before[split].scalars()))
            metrics.update(_numbers(f"{split}_cal_", outcome.after[method][split].scalars()))
    params = outcome.records[method].get("params", {})
    if "temperature" in params:
        metrics["temperature"] = params["temperature"]
    artifacts = {
        "checkpoint": str(checkpoint),
        **{f"calibrator_{m}": p for m, p in outcome.artifacts.items()},
    }
    if outcome.plot:
        artifacts["reliability"] = outcome.plot
    return metrics, artifacts


def run_distill(plan: RunPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Distil (or resume) a student; its and its teacher's numbers."""
    resume = _existing_run(plan.out_dir)
    config = config_from_dict(
        DistillConfig,
        {
            **plan.settings,
            **plan.config,
            "out": plan.out_dir,
            "progress": False,
            "resume": resume,
            "overwrite": False,
        },
    )
    result = distill(config, log=None)
    metrics: dict[str, Any] = {
        **_numbers("student_test_", result.student_test_last),
        **_numbers("student_best_", result.student_test_best),
        "best_epoch": result.best_epoch,
        "train_images_per_s": result.train_images_per_s,
        TRAIN_LOOP_METRIC: result.wall_time_s,
        **_convergence(result.convergence),
    }
    if result.teacher:
        test = result.teacher.get("metrics", {}).get("full", {}).get("test", {})
        for kind, values in test.items():
            metrics.update(_numbers(f"teacher_{kind}_test_", values))
        if result.teacher.get("temperature") is not None:
            metrics["teacher_temperature"] = result.teacher["temperature"]
    if result.cache:
        metrics.update(teacher_cache_hits=result.cache["hits"], teacher_cache_misses=result.cache["misses"])
    artifacts = {
        "last": str(result.checkpoint),
        "best": str(result.best_checkpoint),
        "report": str(result.out_dir / "report.md"),
    }
    return metrics, artifacts


def run_corrupt(plan: RunPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the sweep's corrupted test set (a stratified subset of the test split if asked)."""
    cfg = plan.config
    data = load_dataset(cfg["dataset"], **(cfg.get("dataset_options") or {}))
    test = data.test
    if cfg.get("test_subset"):
        test = subsample_train(test, cfg["test_subset"], cfg["seed"], f"{data.info.name}/test-subset")
    write_corrupted_set(
        test,
        plan.out_dir,
        cfg["corruptions"],
        seed=cfg["seed"],
        table=cfg["table"],
        dataset=f"{data.info.name}:test"
        + (f" (stratified subset of {len(test)})" if cfg.get("test_subset") else ""),
    )
    return {"images": len(test), "corruptions": len(cfg["corruptions"])}, {"dir": plan.out_dir}


def run_robustness(plan: RunPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Evaluate a teacher or student on the corrupted test set; means over corruptions and severities."""
    result = evaluate_corruptions(
        plan.config["checkpoint"], corrupted_dir=plan.config["corrupted_dir"]
    ).to_dict()
    paths = write_robustness_report(result, plan.out_dir)
    mean = result["summary"]["mean"]
    metrics: dict[str, Any] = {f"corrupt_{k}": mean[k] for k in ("accuracy", "error", "nll", "ece", "ace")}
    metrics.update({f"clean_{k}": result["clean"][k] for k in ("accuracy", "nll", "ece", "ace")})
    for metric in ("accuracy", "ece"):
        for severity, (value, _) in per_severity(result["rows"], metric).items():
            metrics[f"corrupt_s{severity}_{metric}"] = value
    return metrics, {"report": str(paths["markdown"]), "json": str(paths["json"])}


RUNNERS = {
    "teacher": run_teacher,
    "calibrate": run_calibrate,
    "distill": run_distill,
    "corrupt": run_corrupt,
    "robustness": run_robustness,
}


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its metrics, artifact paths and wall time (seconds of :func:`run_work`)."""

    metrics: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    wall_time_s: float | None = None


def run_work(plan: RunPlan, threads: int | None = None) -> RunResult:
    """Run ``plan`` (with ``threads`` torch threads if given) and return what it produced; never opens the
    results store. Raises what the run raises."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    with probe_cache.pinned(plan.probes):
        metrics, artifacts = RUNNERS[plan.kind](plan)
    return RunResult(metrics, artifacts, time.perf_counter() - start)


def error_detail(exc: BaseException) -> str:
    """How a run's exception is recorded: ``Type: message`` (no traceback)."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def record_result(store: ResultsStore, plan: RunPlan, result: RunResult) -> str:
    """Record ``plan``, which ``store``'s worker holds, as finished with ``result``: ``"finished"``.

    Raises :class:`~calikd.results.ClaimLostError` if another worker took the run over."""
    store.finish(
        plan.run_id,
        result.metrics,
        result.artifacts,
        out_dir=plan.out_dir,
        wall_time_s=result.wall_time_s,
    )
    return "finished"


def record_failure(store: ResultsStore, plan: RunPlan, detail: str) -> str:
    """Record ``plan``, which ``store``'s worker holds, as failed with ``detail``: ``"failed"``; nothing is
    written and ``"skipped"`` returned if another worker took the run over (its result is that worker's)."""
    return "failed" if store.fail(plan.run_id, detail) else "skipped"


def execute(plan: RunPlan, db_path: str, threads: int | None = None) -> str:
    """Run ``plan`` if this worker can claim it: ``"finished"``, ``"failed"`` or ``"skipped"``."""
    with ResultsStore(db_path) as store:
        if not store.claim(plan.run_id):
            return "skipped"
        try:
            with store.keep_alive(plan.run_id):
                result = run_work(plan, threads)
        except KeyboardInterrupt:
            store.release(plan.run_id)
            raise
        except Exception as exc:  # recorded; the sweep goes on with the other runs
            return record_failure(store, plan, error_detail(exc))
        try:
            return record_result(store, plan, result)
        except ClaimLostError:  # another worker took it over (this one's heartbeat went stale): theirs
            return "skipped"
