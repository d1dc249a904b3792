"""Helpers of the crash-safety and determinism tests, imported by the tests and by the subprocesses they kill.

Importing this module does not import torch (the results-store subprocesses start in a fraction of a
second); everything that needs torch imports it when called.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
DATA = {"train_size": 200, "test_size": 64, "num_classes": 4, "seed": 7, "image_size": 16}
VAL_FRACTION = 0.2  # 10 val images per class: enough for every calibrator (Dirichlet needs 5 a class)
FAST = {"batch_size": 32, "lr": 0.05, "precision": "fp32", "device": "cpu"}
STEPS_PER_EPOCH = 5  # 160 training images in batches of 32
# numbers that measure speed, not results: they differ from run to run and are left out of comparisons
TIMING_PARTS = ("images_per_s", "seconds", "wall_time")
PLACEHOLDER_PNG = b"placeholder: reliability diagrams are not under test here\n"
# One torch thread for the crash and determinism tests, in their fixtures and subprocesses alike: CPU float
# reductions (e.g. oneDNN's convolution weight gradient) depend on the thread count, and two spinning OpenMP
# threads on a busy 2-core machine make these tiny runs 10x slower.
THREADS = 1
CPU_FP32 = ["--no-plots", "--device", "cpu", "--precision", "fp32"]
# the primary calibrator (temperature), one with a tensor file (matrix) and one after it; Dirichlet's fit
# alone takes 4 s here, so the crash tests leave it to test_determinism.py
CALIBRATE = ["--method", "temperature", "matrix", "isotonic", *CPU_FP32]


def die(note: str = "") -> NoReturn:
    """SIGKILL this process at once (no cleanup, no atexit, no finally), after printing ``note``."""
    if note:
        print(note, file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def our_threads() -> Iterator[None]:
    """Torch on :data:`THREADS` threads inside the block (for fixtures of any scope)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def copy_checkpoint(checkpoint: str, folder: Path) -> str:
    """``folder/last``: a copy of ``checkpoint``'s weights and metadata, without its calibrators."""
    folder.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy2(checkpoint + suffix, folder / f"last{suffix}")
    return str(folder / "last")


@contextlib.contextmanager
def no_plots() -> Iterator[None]:
    """Replace the reliability diagrams of distillation and calibration reports by a placeholder file.

    matplotlib takes about a second per figure here; the plots are not what these tests check.
    """
    import calikd.report.calibration
    import calikd.report.run
    from calikd.utils.io import atomic_write_bytes

    def placeholder(panels: Any, path: str | os.PathLike[str], **_: Any) -> Path:
        atomic_write_bytes(path, PLACEHOLDER_PNG)
        return Path(path)

    modules = (calikd.report.run, calikd.report.calibration)
    saved = [m.plot_reliability_diagrams for m in modules]
    for module in modules:
        module.plot_reliability_diagrams = placeholder  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.plot_reliability_diagrams = original  # type: ignore[attr-defined]


class KillingConnection:
    """A sqlite3 connection that SIGKILLs its process in the middle of a multi-row write: the
    ``executemany`` whose SQL contains ``marker`` writes ``after_rows`` rows, then the process dies inside
    the open transaction. Everything else is passed to the wrapped connection."""

    def __init__(self, conn: sqlite3.Connection, marker: str, after_rows: int) -> None:
        self._conn, self._marker, self._after = conn, marker, after_rows

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        if self._marker not in sql:
            return self._conn.executemany(sql, rows)

        def rows_then_die() -> Iterator[Any]:
            for i, row in enumerate(rows):
                if i == self._after:  # SQLite has inserted rows 0 .. i-1 and asks for the next one
                    die(f"SIGKILL after {i} rows of '{sql[:30]}', in_transaction={self._conn.in_transaction}")
                yield row

        return self._conn.executemany(sql, rows_then_die())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def kill_in_transaction(conn: sqlite3.Connection, changes: int) -> None:
    """Arm ``conn`` to SIGKILL its process from inside SQLite's virtual machine (a progress handler) as soon
    as an open transaction has changed ``changes`` rows: a write that dies half-way, below Python."""
    base = conn.total_changes

    def handler() -> int:
        done = conn.total_changes - base
        if conn.in_transaction and done >= changes:
            die(f"SIGKILL inside SQLite after {done} changed rows, in_transaction={conn.in_transaction}")
        return 0

    conn.set_progress_handler(handler, 1)


def run_killed(script: str, *args: str, threads: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter with this folder importable and ``threads`` torch threads (the
    parent's: CPU float reductions depend on the thread count); it is expected to SIGKILL itself."""
    prelude = (
        f"import sys; sys.path.insert(0, {str(HERE)!r})\nimport torch; torch.set_num_threads({threads})\n"
        if threads
        else f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1)}
    return subprocess.run(
        [sys.executable, "-c", prelude + script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def without_timings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the speed measurements (img/s, seconds, wall time)."""
    return {k: v for k, v in values.items() if not any(part in k for part in TIMING_PARTS)}


def history_without_timings(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [without_timings(record) for record in history]


def store_rows(db: str | os.PathLike[str]) -> dict[tuple[str, str], tuple[dict, dict]]:
    """``(kind, name) -> (metrics without timings, artifacts relative to the run's folder)`` of every
    finished run in the results store ``db``: what two sweeps of one spec in two folders must share."""
    from calikd.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        runs = store.list_runs(status="finished")
    return {
        (r.kind, r.name): (
            without_timings(r.metrics),
            {k: os.path.relpath(v, r.out_dir) for k, v in r.artifacts.items()},
        )
        for r in runs
    }


def teacher_config(out: str | os.PathLike[str], **overrides: Any) -> Any:
    """A tiny teacher (cnn width 8, 2 epochs, random crop + flip) on :data:`DATA`."""
    from calikd.teacher import TeacherConfig

    base: dict[str, Any] = dict(
        dataset="synthetic",
        dataset_options=dict(DATA),
        model="cnn",
        model_kwargs={"width": 8},
        epochs=2,
        augment=True,
        val_fraction=VAL_FRACTION,
        progress=False,
        out=str(out),
        **FAST,
    )
    base.update(overrides)
    return TeacherConfig(**base)


def distill_config(teacher: str | None, out: str | os.PathLike[str], **overrides: Any) -> Any:
    """A tiny student (cnn width 4, 2 epochs) of ``teacher``, KD from the calibrated teacher by default."""
    from calikd.distill import DistillConfig

    base: dict[str, Any] = dict(
        teacher=teacher,
        student="cnn",
        student_kwargs={"width": 4},
        method="kd",
        epochs=2,
        progress=False,
        teacher_calibration="auto",
        out=str(out),
        **FAST,
    )
    base.update(overrides)
    config = DistillConfig(**base)
    config.validate()
    return config


def sweep_dict(out: str | os.PathLike[str], name: str = "tiny") -> dict[str, Any]:
    """A tiny sweep: 2 teachers, their calibrations, 4 KD students (raw and calibrated) sharing a disk cache
    of teacher logits, 1 epoch each: 8 runs."""
    fast = {**FAST, "epochs": 1}
    return {
        "name": name,
        "out": str(out),
        "dataset": "synthetic",
        "dataset_options": dict(DATA),
        "teachers": [
            {"name": "cnn8", "model": "cnn", "model_kwargs": {"width": 8}},
            {"name": "mlp32", "model": "mlp", "model_kwargs": {"width": 32, "depth": 1}},
        ],
        "teacher_defaults": {**fast, "val_fraction": VAL_FRACTION},
        "calibrations": ["none", "temperature"],
        "methods": ["kd"],
        "students": [{"model": "cnn", "kwargs": {"width": 4}}],
        "seeds": [0],
        "distill": {**fast, "teacher_cache": "disk", "cache_dir": str(Path(out) / "cache")},
    }


def checkpoint_tensors(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Every tensor of ``last`` and ``best`` in a run folder, keyed ``stem/name``."""
    from safetensors.torch import load_file

    return {
        f"{stem}/{name}": tensor
        for stem in ("last", "best")
        for name, tensor in load_file(Path(folder) / f"{stem}.safetensors").items()
    }


def same_tensors(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same names, and every tensor bitwise equal (dtype and shape included)."""
    import torch

    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def temp_files(folder: str | os.PathLike[str]) -> list[str]:
    """Left-over temporary files of atomic writes under ``folder`` (``.tmp`` and ``.pending``)."""
    return sorted(
        str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.name.endswith((".tmp", ".pending"))
    )
