"""Crash safety: SIGKILL in the middle of a distillation, a calibration, a sweep and a results-store write.

Each test kills a subprocess at a chosen point (from inside, so the point is exact), restarts the work and
checks that the result equals an uninterrupted run bit for bit, that nothing half-written is ever read, and
that the results store has every run once. Subprocesses use the parent's torch thread count: CPU float
reductions depend on it. (Teacher training: tests/engine/test_teacher_training.py.)
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from robust_helpers import (
    CALIBRATE,
    STEPS_PER_EPOCH,
    checkpoint_tensors,
    copy_checkpoint,
    distill_config,
    history_without_timings,
    no_plots,
    our_threads,
    run_killed,
    same_tensors,
    store_rows,
    temp_files,
)

from calikd.calibration import load_calibrator
from calikd.calibration.lookup import CalibratorSpec, find_calibrator, resolve_calibrator
from calikd.cli import main
from calikd.distill import DistillResult, distill
from calikd.errors import CheckpointError, ConfigError
from calikd.experiments import expand, load_spec
from calikd.results import ResultsStore, run_id_for, worker_is_gone
from calikd.store import read_checkpoint

KILLED = -signal.SIGKILL


@pytest.fixture(autouse=True, scope="module")
def _no_plots() -> Iterator[None]:
    with no_plots():
        yield


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    """Every test on one torch thread, as its subprocesses (``threads=torch.get_num_threads()``)."""


def _killed(proc) -> None:
    assert proc.returncode == KILLED, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


# -- distillation ----------------------------------------------------------------------------------------

DISTILL_SCRIPT = """
import os, sys
from robust_helpers import STEPS_PER_EPOCH, die, distill_config, no_plots
from calikd.distill import distill

teacher, out, cache, kill = sys.argv[1:5]
on_step = None
if kill == "mid-epoch":  # in the middle of epoch 2 of 2
    def on_step(step):
        if step == STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2:
            die()
else:  # epoch 1's checkpoint is committed (last.json written); its weights are still '.pending'
    replace = os.replace
    def dying_replace(src, dst):
        if str(src).endswith(".pending") and os.path.basename(dst) == "last.safetensors":
            die()
        replace(src, dst)
    os.replace = dying_replace
with no_plots():
    distill(distill_config(teacher, out, teacher_cache="disk", cache_dir=cache), on_step=on_step, log=None)
raise SystemExit("not killed")
"""


@pytest.fixture(scope="module")
def uninterrupted(teacher: str, tmp_path_factory: pytest.TempPathFactory) -> DistillResult:
    """KD from the calibrated teacher, 2 epochs, per-epoch teacher-logit cache on disk, never killed."""
    root = tmp_path_factory.mktemp("distill-uninterrupted")
    config = distill_config(teacher, root / "run", teacher_cache="disk", cache_dir=str(root / "cache"))
    with our_threads():
        result = distill(config, log=None)
    assert result.cache["layout"] == "per-epoch" and result.cache["misses"] == 2 * STEPS_PER_EPOCH
    assert result.teacher["calibrator_applied"] and result.teacher["temperature"] is not None
    return result


def _cache_files(cache: Path) -> dict[str, np.ndarray | dict]:
    (folder,) = cache.iterdir()  # one key: one folder
    return {
        p.name: json.loads(p.read_text()) if p.suffix == ".json" else np.load(p)
        for p in sorted(folder.iterdir())
    }


@pytest.mark.parametrize("kill", ["mid-epoch", "checkpoint-commit"])
def test_sigkill_mid_distillation_then_resume_is_bit_identical(
    teacher: str, uninterrupted: DistillResult, tmp_path: Path, kill: str
) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    _killed(run_killed(DISTILL_SCRIPT, teacher, str(out), str(cache), kill, threads=torch.get_num_threads()))
    assert json.loads((out / "last.json").read_text())["epoch"] == 1  # only epoch 1 had finished
    if kill == "checkpoint-commit":
        assert (out / "last.safetensors.pending").exists() and not (out / "last.safetensors").exists()
        assert read_checkpoint(out / "last").meta["epoch"] == 1  # readable from the committed files
    assert sorted(_cache_files(cache)) == ["epoch-0001.json", "epoch-0001.npy", "key.json"]

    config = distill_config(teacher, out, teacher_cache="disk", cache_dir=str(cache), resume=True)
    resumed = distill(config, log=None)
    assert resumed.cache["hits"] == 0 and resumed.cache["misses"] == STEPS_PER_EPOCH  # epoch 2 only
    assert same_tensors(checkpoint_tensors(out), checkpoint_tensors(uninterrupted.out_dir))
    assert history_without_timings(resumed.history) == history_without_timings(uninterrupted.history)
    assert resumed.student_test_last == uninterrupted.student_test_last
    assert resumed.student_test_best == uninterrupted.student_test_best
    assert resumed.best_epoch == uninterrupted.best_epoch and resumed.teacher == uninterrupted.teacher
    report, reference = (json.loads((d / "report.json").read_text()) for d in (out, uninterrupted.out_dir))
    assert report["student_test_last"] == reference["student_test_last"]
    assert temp_files(out) == [] and temp_files(cache) == []

    # the cache the killed run left is sound: it equals an uninterrupted run's, and a later run reuses it
    ours, theirs = _cache_files(cache), _cache_files(Path(uninterrupted.cache["folder"]).parent)
    assert ours.keys() == theirs.keys() and ours["key.json"] == theirs["key.json"]
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours if k.endswith(".npy"))
    later_config = distill_config(teacher, tmp_path / "later", teacher_cache="disk", cache_dir=str(cache))
    later = distill(later_config, log=None)
    assert later.cache["misses"] == 0 and later.cache["hits"] == 2 * STEPS_PER_EPOCH
    assert same_tensors(checkpoint_tensors(tmp_path / "later"), checkpoint_tensors(uninterrupted.out_dir))


# -- calibration -----------------------------------------------------------------------------------------

CALIBRATE_SCRIPT = """
import contextlib, sys
from pathlib import Path
import calikd.utils.io as io
from robust_helpers import die
from calikd.cli import main

checkpoint, target, *args = sys.argv[1:]
atomic_write = io.atomic_write

class HalfWritten:
    def __init__(self, fh):
        self.fh = fh
    def write(self, data):
        self.fh.write(data[: max(1, len(data) // 2)])
        self.fh.flush()
        die(f"SIGKILL while writing {target}")

@contextlib.contextmanager
def dying_atomic_write(path, mode="wb"):
    with atomic_write(path, mode) as fh:
        yield HalfWritten(fh) if Path(path).name == target else fh

io.atomic_write = dying_atomic_write
main(["calibrate", checkpoint, *args])
raise SystemExit("not killed")
"""


def _calibrator_files(checkpoint: str) -> dict[str, bytes]:
    folder = Path(checkpoint).parent
    return {p.name: p.read_bytes() for p in sorted(folder.glob("last.calibrator*"))}


@pytest.mark.parametrize(
    "target",
    [
        "last.calibrator.json",  # the primary calibrator (temperature): what distillation picks up
        "last.calibrator-matrix.safetensors",  # a tensor file, before its JSON
        "last.calibrator-matrix.json",  # the JSON that commits a calibrator whose tensors are written
    ],
)
def test_sigkill_while_writing_a_calibrator_then_rerun(
    teacher: str, calibrated: str, tmp_path: Path, target: str
) -> None:
    checkpoint = copy_checkpoint(teacher, tmp_path / "run")
    proc = run_killed(CALIBRATE_SCRIPT, checkpoint, target, *CALIBRATE, threads=torch.get_num_threads())
    _killed(proc)
    assert f"SIGKILL while writing {target}" in proc.stderr
    (partial,) = (tmp_path / "run").glob(f".{target}.*.tmp")  # the half-written file, under a temp name
    reference = _calibrator_files(calibrated)
    assert 0 < partial.stat().st_size < len(reference[target])

    # what is visible is complete: every calibrator file there equals the uninterrupted run's, and loads
    visible = _calibrator_files(checkpoint)
    assert target not in visible and all(data == reference[name] for name, data in visible.items())
    for name in visible:
        if name.endswith(".json"):
            load_calibrator(Path(checkpoint).parent / name)
    if target == "last.calibrator.json":
        assert find_calibrator(checkpoint) is None
        with pytest.raises(ConfigError, match="has no calibrator"):
            resolve_calibrator(checkpoint, CalibratorSpec("auto"))
    else:
        assert resolve_calibrator(checkpoint, CalibratorSpec("auto"))[0].method == "temperature"
        with pytest.raises(CheckpointError, match="no calibrator at"):
            load_calibrator(Path(checkpoint).parent / "last.calibrator-matrix.json")

    assert main(["calibrate", checkpoint, *CALIBRATE]) == 0
    assert _calibrator_files(checkpoint) == reference  # the same files, byte for byte
    # only the killed write's temp file is left over; no reader ever opens it (hidden name, .tmp)
    assert temp_files(tmp_path / "run") == [partial.name]


# -- a sweep ---------------------------------------------------------------------------------------------

SWEEP_SCRIPT = """
import sys
import calikd.experiments.tasks as tasks
from robust_helpers import KillingConnection, die, no_plots
from calikd.cli import main
from calikd.results import ResultsStore

spec, db, kill = sys.argv[1:4]
if kill == "distill-mid-epoch":  # the second student, which reads the first one's teacher-logit cache
    distill, calls = tasks.distill, []
    def dying_distill(config, **kwargs):
        calls.append(config.out)
        if len(calls) == 2:
            kwargs["on_step"] = lambda step: step == 3 and die(f"SIGKILL in the middle of {config.out}")
        return distill(config, **kwargs)
    tasks.distill = dying_distill  # what the sweep's tasks call
else:  # "calibrate-recorded": while the first calibration is recorded, between its metric rows
    finish = ResultsStore.finish
    def dying_finish(self, run_id, *args, **kwargs):
        if self.get(run_id).kind == "calibrate":
            self._conn_obj = KillingConnection(self._conn, "INSERT INTO metrics", 3)
        return finish(self, run_id, *args, **kwargs)
    ResultsStore.finish = dying_finish
with no_plots():
    main(["sweep", spec, "--db", db])
raise SystemExit("not killed")
"""


def _check_store_file(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.mark.parametrize("kill", ["distill-mid-epoch", "calibrate-recorded"])
def test_sigkill_mid_sweep_then_rerun_finishes_every_run_once(
    reference_sweep: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], kill: str
) -> None:
    ref_spec, ref_db = reference_sweep
    spec_data = load_spec(ref_spec).raw | {"out": str(tmp_path / "sweep")}
    spec_data["distill"] = spec_data["distill"] | {"cache_dir": str(tmp_path / "sweep" / "cache")}
    spec_file, db = tmp_path / "tiny.yaml", tmp_path / "calikd.db"
    spec_file.write_text(json.dumps(spec_data))  # JSON is YAML
    plans = expand(load_spec(spec_file))
    assert len(plans) == 8

    proc = run_killed(SWEEP_SCRIPT, str(spec_file), str(db), kill, threads=torch.get_num_threads())
    _killed(proc)
    _check_store_file(db)
    with ResultsStore(db, create=False) as store:
        (victim,) = store.list_runs(status="running")  # the run in flight when the sweep died
        assert worker_is_gone(victim.worker) and victim.is_stale()  # taken over at once, no waiting
        if kill == "calibrate-recorded":
            assert victim.kind == "calibrate" and victim.metrics == {}  # the half-recorded write is gone
            assert find_calibrator(victim.config["checkpoint"]) is not None  # its calibrator was written
        else:
            assert victim.kind == "distill" and victim.config["teacher_calibration"] == "temperature"
        finished_before = {r.run_id for r in store.list_runs(status="finished")}

    capsys.readouterr()
    assert main(["sweep", str(spec_file), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out and f"{len(finished_before)} done before" in out

    _check_store_file(db)
    with ResultsStore(db, create=False) as store:
        runs = store.list_runs(sweep="tiny")
        assert sorted(r.run_id for r in runs) == sorted(p.run_id for p in plans)  # none lost, none extra
        assert {r.status for r in runs} == {"finished"}
        assert {r.run_id: r.attempts for r in runs} == {
            p.run_id: 1 + (p.run_id == victim.run_id) for p in plans
        }
    conn = sqlite3.connect(db)
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "sweep_runs")]
    conn.close()
    assert counts == [8, 8]
    # the same numbers, artifacts and weights as the sweep that was never interrupted
    ours, reference = store_rows(db), store_rows(ref_db)
    assert ours.keys() == reference.keys() and len(ours) == 8
    for key in ours:
        assert ours[key] == reference[key], key
    ref_dirs = {p.name: p.out_dir for p in expand(load_spec(ref_spec))}  # distill folders: other run ids
    for plan in plans:
        if plan.kind in ("teacher", "distill"):
            ref = checkpoint_tensors(ref_dirs[plan.name])
            assert same_tensors(checkpoint_tensors(plan.out_dir), ref), plan.name
    assert temp_files(tmp_path / "sweep") == []


# -- the results store -----------------------------------------------------------------------------------

STORE_SCRIPT = """
import json, sys
from calikd.results import ResultsStore  # the standard library only: no torch to import
from robust_helpers import KillingConnection, kill_in_transaction

db, write, run_id = sys.argv[1:4]
metrics, artifacts = json.loads(sys.argv[4]), json.loads(sys.argv[5])
store = ResultsStore(db)
if write == "register":  # dies with the new sweep and run rows in, the sweep_runs row not yet
    kill_in_transaction(store._conn, 2)
    store.register(run_id, sweep="s2", kind="distill", name="kd", config={"seed": 1})
else:
    assert store.claim(run_id)
    if write == "finish-between-rows":
        store._conn_obj = KillingConnection(store._conn, "INSERT INTO metrics", 4)
    else:  # "finish-inside-sqlite": after the status update and two metric rows
        kill_in_transaction(store._conn, 3)
    store.finish(run_id, metrics, artifacts, out_dir="/runs/x")
raise SystemExit("not killed")
"""
METRICS = {f"m{i}": i / 10 for i in range(10)}
ARTIFACTS = {"last": "/runs/x/last.safetensors", "best": "/runs/x/best.safetensors", "log": "/runs/x/log"}


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("write", ["finish-between-rows", "finish-inside-sqlite", "register"])
def test_sigkill_inside_a_store_write_leaves_no_trace_and_a_retry_records_once(
    tmp_path: Path, write: str
) -> None:
    db = tmp_path / "calikd.db"
    config = {"seed": 0} if write != "register" else {"seed": 1}
    run_id = run_id_for(config)
    with ResultsStore(db) as store:
        if write != "register":
            store.register(run_id, sweep="s1", kind="distill", name="kd", config=config)
    args = (str(db), write, run_id, json.dumps(METRICS), json.dumps(ARTIFACTS))
    proc = run_killed(STORE_SCRIPT, *args, threads=0, timeout=60)
    _killed(proc)
    assert "in_transaction=True" in proc.stderr  # it died with the transaction open

    _check_store_file(db)
    with ResultsStore(db, create=False) as store:
        if write == "register":  # none of the three rows of the write is there
            assert store.list_runs() == [] and store.sweeps() == []
            assert store.register(run_id, sweep="s2", kind="distill", name="kd", config=config)
            assert store.claim(run_id)
        else:
            run = store.get(run_id)
            assert (run.status, run.metrics, run.artifacts, run.attempts) == ("running", {}, {}, 1)
            assert run.out_dir is None and worker_is_gone(run.worker)
            assert store.claim(run_id)  # its worker is gone: the retry takes it over at once
        store.finish(run_id, METRICS, ARTIFACTS, out_dir="/runs/x")
        run = store.get(run_id)
        assert run.status == "finished" and run.metrics == METRICS and run.artifacts == ARTIFACTS
        assert run.attempts == (1 if write == "register" else 2)
    assert _count(db, "SELECT count(*) FROM runs") == 1
    assert _count(db, "SELECT count(*) FROM sweep_runs") == 1
    assert _count(db, "SELECT count(*) FROM metrics") == len(METRICS)
    assert _count(db, "SELECT count(*) FROM artifacts") == len(ARTIFACTS)
    _check_store_file(db)
