"""The Ray executor on a local Ray instance started here: same runs and store rows as the local executor,
the store written by the driver alone (tasks never open it; the driver claims, heartbeats and records),
failures and dead workers recorded, Ctrl-C hands runs back, restarts resume, the CLI flags, and a clear
error without Ray."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_sweep import sweep_dict

from calikd.cli import main
from calikd.errors import ConfigError
from calikd.experiments import expand, parse_spec, ray_executor, run_sweep
from calikd.experiments.ray_executor import RayExecutor, RayOptions, run_in_task, task_error_detail
from calikd.experiments.tasks import execute
from calikd.results import ResultsStore, default_worker


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local two-CPU Ray instance for this module's tests (which skip without Ray)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    # the task bodies below reach the Ray workers by value (this module is not importable there)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def _task_body(monkeypatch: pytest.MonkeyPatch, wrap: Callable[..., Any]) -> None:
    """Make the Ray executors created from now on run ``wrap(body, *task_args)`` as each task's body,
    ``body`` being the real one (``wrap`` is pickled by value and runs in the Ray worker process)."""
    body = ray_executor.run_in_task
    monkeypatch.setattr(ray_executor, "run_in_task", lambda *args: wrap(body, *args))


def _refusing_the_store(body: Callable[..., Any], *args: Any) -> Any:
    """Run the real task body in a Ray worker where opening a results store raises."""
    from calikd.results import ResultsStore as Store

    opened = Store.__init__

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a Ray task opened the results store")

    Store.__init__ = refuse  # type: ignore[method-assign]  # in this worker process only, for this task
    try:
        return body(*args)
    finally:
        Store.__init__ = opened  # type: ignore[method-assign]


def _row(run: Any) -> tuple[Any, ...]:
    """What a sweep's executor decides in a run's store row (metric values may differ in the last bits)."""
    return (
        run.kind,
        run.name,
        run.status,
        run.attempts,
        run.worker.rsplit("/", 1)[0],  # host:pid of the process that claimed it
        run.error,
        sorted(run.metrics),
        run.artifacts,
        run.out_dir,
        run.heartbeat_at == run.finished_at,
        run.wall_time_s is not None and 0 < run.wall_time_s <= run.finished_at - run.started_at,
    )


def test_ray_sweep_matches_the_local_one_and_resumes(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec(sweep_dict(tmp_path, out="sweep"))  # relative: run ids equal in both folders
    _task_body(monkeypatch, _refusing_the_store)  # the driver alone opens the store
    rows: dict[str, dict[str, tuple[Any, ...]]] = {}
    for executor in ("local", "ray"):
        (tmp_path / executor).mkdir()
        monkeypatch.chdir(tmp_path / executor)  # Ray tasks work in the driver's folder too
        lines: list[str] = []
        outcome = run_sweep(spec, db_path="calikd.db", executor=executor, log=lines.append)
        assert outcome.ok and outcome.counts["finished"] == 1 + 1 + 3, lines
        progress = [line.split("]")[0].strip() for line in lines if line.startswith("  [")]
        assert progress == [f"[{i}/5" for i in range(1, 6)]
        assert "ETA" in lines[-3] and "elapsed" in lines[-2] and "% overhead" in lines[-1]
        with ResultsStore("calikd.db") as store:
            runs = store.list_runs(sweep="tiny")
        rows[executor] = {r.run_id: _row(r) for r in runs}
        assert all(0 <= r.metrics.get("student_test_accuracy", 0) <= 1 for r in runs)
        assert (tmp_path / executor / "sweep" / "teachers").is_dir()
    assert rows["ray"] == rows["local"]
    assert {r[2:6] for r in rows["ray"].values()} == {("finished", 1, default_worker(), None)}  # the driver
    assert all(r[-2:] == (True, True) for r in rows["ray"].values())
    assert outcome.db_path == str(tmp_path / "ray" / "calikd.db")  # absolute, as printed
    again = run_sweep(spec, db_path="calikd.db", executor="ray", ray_options={"cpus_per_run": 1}, log=None)
    assert again.counts == {"done before": 5}


def _dying(body: Callable[..., Any], plan: Any, *args: Any) -> Any:
    """A task body whose teacher returns after a while, calibration's worker dies and student raises."""
    from calikd.experiments.tasks import RunResult

    if plan.kind == "teacher":
        time.sleep(0.8)
        return RunResult({"accuracy": 0.5}, {"last": "t8/last"}, 0.8)
    if plan.kind == "calibrate":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ValueError("bad luck")


def test_the_driver_heartbeats_runs_and_records_dead_workers_and_errors(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(sweep_dict(tmp_path, methods=["ce", "kd"], calibrations=["temperature"]))
    _task_body(monkeypatch, _dying)
    monkeypatch.setattr(RayExecutor, "heartbeat_s", 0.1)
    beats: list[tuple[str, bool]] = []
    heartbeat = ResultsStore.heartbeat

    def spy(store: ResultsStore, run_id: str) -> bool:
        beats.append((run_id, heartbeat(store, run_id)))
        return beats[-1][1]

    monkeypatch.setattr(ResultsStore, "heartbeat", spy)
    outcome = run_sweep(spec, db_path=db, executor="ray", log=None)
    assert outcome.counts == {"finished": 1, "failed": 2, "blocked": 1}
    with ResultsStore(db) as store:
        runs = {
            r.kind + ("-" + r.config["method"] if r.kind == "distill" else ""): r for r in store.list_runs()
        }
    teacher = runs["teacher"]
    assert (teacher.status, teacher.metrics, teacher.artifacts) == (
        "finished",
        {"accuracy": 0.5},
        {"last": "t8/last"},
    )
    assert teacher.wall_time_s == 0.8 and teacher.worker.startswith(default_worker() + "/")
    # at least one beat while the 0.8 s teacher ran (every 0.1 s on a quiet machine; a loaded one starves the
    # driver's loop, so no count beyond one is promised)
    assert [b for b in beats if b[0] == teacher.run_id] and all(ok for _, ok in beats)
    calibrate = runs["calibrate"]
    assert calibrate.status == "failed" and calibrate.attempts == 1
    assert calibrate.error.startswith("the Ray worker running it died (WorkerCrashedError: ")
    assert (runs["distill-ce"].status, runs["distill-ce"].error) == ("failed", "ValueError: bad luck")
    assert runs["distill-kd"].status == "pending"  # blocked: its calibration failed


def _slow_but_teachers(body: Callable[..., Any], plan: Any, *args: Any) -> Any:
    from calikd.experiments.tasks import RunResult

    if plan.kind == "teacher":
        return RunResult({"accuracy": 0.5}, {}, 0.1)
    Path(args[-1], f"{plan.name}.started").touch()  # in the sweep's working directory
    for _ in range(6000):  # until cancelled (which interrupts Python code, not one long sleep); 10 minutes,
        # so that on a loaded machine the first task still runs when the second has only just started
        time.sleep(0.1)
    raise AssertionError(f"{plan.name} was not cancelled")


def test_runs_in_flight_are_held_by_the_driver_and_handed_back_when_interrupted(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "calikd.db")
    monkeypatch.chdir(tmp_path)
    plans = expand(parse_spec(sweep_dict(tmp_path, methods=["ce"], calibrations=["temperature"])))
    with ResultsStore(db) as store:
        for plan in plans:
            store.register(plan.run_id, sweep="tiny", kind=plan.kind, name=plan.name, config=plan.config)
    _task_body(monkeypatch, _slow_but_teachers)
    monkeypatch.setattr(RayExecutor, "heartbeat_s", 0.1)
    executor = RayExecutor()
    runs = executor.run(plans, db)
    plan, status = next(runs)
    assert (plan, status) == (plans[0], "finished") and plan.kind == "teacher"
    taken, slow = plans[1], plans[2:]
    with ResultsStore(db) as store:
        held = [store.get(p.run_id) for p in plans[1:]]
        assert {(r.status, r.worker.rsplit("/", 1)[0]) for r in held} == {("running", default_worker())}
    assert [execute(p, db) for p in plans[1:]] == ["skipped"] * 2  # a local worker leaves them alone
    deadline = time.monotonic() + 240  # Ray workers start slowly on a loaded 2-core machine
    while not all((tmp_path / f"{p.name}.started").exists() for p in plans[1:]):  # running, not starting
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with ResultsStore(db) as store:  # another sweep process takes one over (as if its heartbeat were stale)
        assert store.claim(taken.run_id, worker="elsewhere:1/x", stale_after_s=0)
    assert next(runs) == (taken, "skipped")  # seen at the next heartbeat: its task is cancelled
    start = time.monotonic()
    runs.close()  # as on Ctrl-C: the tasks are cancelled and their runs go back to pending
    # a cancel that has not reached its task after CANCEL_WAIT_S falls back to a forced cancel (seen once in
    # a clean-clone CI run: 10.006 s); the runs must be handed back either way, without waiting on the task
    # (the bound only has to tell a cancel from the task's own 10 minutes: a loaded machine needs the slack)
    assert time.monotonic() - start < ray_executor.CANCEL_WAIT_S + 30
    executor.close()
    with ResultsStore(db) as store:
        rows = [store.get(p.run_id) for p in plans]
    assert [(r.status, r.attempts, r.worker.split("/")[0]) for r in rows] == [
        ("finished", 1, default_worker()),
        ("running", 2, "elsewhere:1"),
        *[("pending", 1, default_worker())] * len(slow),
    ]


def test_a_failing_ray_run_is_recorded_and_the_rest_go_on(tmp_path: Path, ray_cluster: None) -> None:
    db = str(tmp_path / "calikd.db")
    missing = str(tmp_path / "missing" / "last")
    spec = parse_spec(sweep_dict(tmp_path, teachers=[{"name": "gone", "checkpoint": missing}]))
    outcome = run_sweep(spec, db_path=db, executor="ray", log=None)
    assert outcome.counts == {"finished": 1, "failed": 2, "blocked": 1}
    with ResultsStore(db) as store:
        failed = store.list_runs(sweep="tiny", status="failed")
        assert len(failed) == 2 and all(r.error.startswith("calikd.errors.CheckpointError: ") for r in failed)
        assert all("missing" in r.error and r.worker.startswith(default_worker() + "/") for r in failed)


def test_sweep_command_with_the_ray_executor(
    tmp_path: Path, ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path, methods=["kd"], calibrations=["temperature"])))
    db = tmp_path / "runs.db"
    args = ["sweep", str(path), "--db", str(db), "--executor", "ray", "--ray-cpus-per-run", "1"]
    assert main(args) == 0
    assert "done: 3 finished" in capsys.readouterr().out
    assert main(["sweep", str(path), "--db", str(db), "--ray-gpus-per-run", "1"]) == 2
    assert "applies to --executor ray only" in capsys.readouterr().err
    assert main([*args, "--workers", "2"]) == 2
    assert "--workers applies to --executor local only" in capsys.readouterr().err


def test_without_ray_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = parse_spec(sweep_dict(tmp_path))
    with pytest.raises(ConfigError, match="pip install 'calikd\\[ray\\]'"):
        run_sweep(spec, db_path=str(tmp_path / "x.db"), executor="ray", log=None)
    assert not (tmp_path / "x.db").exists()  # refused before anything is written
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path)))
    assert main(["sweep", str(path), "--db", str(tmp_path / "y.db"), "--executor", "ray"]) == 2
    assert "pip install 'calikd[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options,message",
    [
        ({"cpus_per_ran": 2}, "did you mean 'cpus_per_run'"),
        ({"gpus_per_run": -1}, "must be a number >= 0"),
        ({"cpus_per_run": 0}, "must ask for some CPUs or GPUs"),
    ],
)
def test_bad_ray_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RayOptions.coerce(options)


def test_a_task_uses_its_gpu_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With GPUs the run's device becomes auto; without, the task sees no GPU; threads follow the CPUs.
    The task is given no store path: it only runs the work and returns its result."""
    assert list(inspect.signature(run_in_task).parameters) == ["plan", "threads", "gpus", "cwd"]
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "calikd.experiments.ray_executor.run_work",
        lambda plan, threads: seen.append((plan.config["device"], threads)) or "result",
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.chdir(tmp_path)
    teacher = expand(parse_spec(sweep_dict(tmp_path)))[0]  # its config says device: cpu
    assert RayOptions(cpus_per_run=2.5).threads == 2
    assert run_in_task(teacher, 2, 1.0, str(tmp_path)) == "result"
    assert run_in_task(teacher, 1, 0.0, str(tmp_path)) == "result"
    assert seen == [("auto", 2), ("cpu", 1)]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(ConfigError, match="does not exist on node"):
        run_in_task(teacher, 1, 0.0, str(tmp_path / "elsewhere"))


def test_what_is_recorded_for_a_task_that_did_not_return() -> None:
    ray = pytest.importorskip("ray")
    crashed = ray.exceptions.WorkerCrashedError()
    assert task_error_detail(ray, crashed).startswith("the Ray worker running it died (WorkerCrashedError: ")
    cancelled = ray.exceptions.TaskCancelledError(b"\x01" * 24)  # a task id
    assert task_error_detail(ray, cancelled).startswith("its Ray task was cancelled (TaskCancelledError: ")
    while_running = ray.exceptions.RayTaskError("f", "trace", cancelled).as_instanceof_cause()
    assert task_error_detail(ray, while_running) == task_error_detail(ray, cancelled)
    raised = ray.exceptions.RayTaskError("f", "trace", ValueError("bad luck")).as_instanceof_cause()
    assert task_error_detail(ray, raised) == "ValueError: bad luck"
