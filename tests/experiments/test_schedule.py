"""The sweep's run graph: runs start when what they need has finished, not when a whole phase has."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.experiments.test_sweep import sweep_dict

from calikd.errors import ConfigError
from calikd.experiments import expand, parse_spec, run_sweep
from calikd.experiments import runner as runner_module
from calikd.experiments.plan import RunPlan
from calikd.experiments.schedule import Schedule, replay, teacher_cost
from calikd.results import ResultsStore

TWO_TEACHERS = [
    {"name": "slow", "model": "resnet8", "epochs": 1},
    {"name": "fast", "model": "resnet8", "epochs": 2},
]


def _plans(tmp_path: Path, **overrides: object) -> list[RunPlan]:
    spec = {"teachers": TWO_TEACHERS, "methods": ["kd"], **overrides}
    return expand(parse_spec(sweep_dict(tmp_path, **spec)))


def _simulate(schedule: Schedule, slots: int, seconds: dict[str, float]) -> list[tuple[float, RunPlan]]:
    """Run ``schedule`` on ``slots`` workers in virtual time; each run takes ``seconds[name or kind]`` (1
    otherwise) and finishes; the (end time, plan) of every run in the order they end."""
    return replay(schedule, slots, lambda plan: seconds.get(plan.name, seconds.get(plan.kind, 1.0)))


def test_a_teachers_students_start_while_another_teacher_still_trains(tmp_path: Path) -> None:
    plans = _plans(tmp_path)
    ended = _simulate(Schedule(plans), slots=2, seconds={"slow": 10.0, "teacher": 2.0})
    when = {plan.run_id: t for t, plan in ended}
    assert sorted(when) == sorted(p.run_id for p in plans)  # every run, once
    slow_end = next(t for t, p in ended if p.name == "slow")
    fast_students = [p for p in plans if p.kind == "distill" and p.name.startswith("fast-")]
    assert fast_students and all(when[p.run_id] < slow_end for p in fast_students)
    for plan in plans:  # nothing starts before what it needs has ended
        took = {"slow": 10.0}.get(plan.name, 2.0 if plan.kind == "teacher" else 1.0)
        assert all(when[d] <= when[plan.run_id] - took for d in plan.depends_on)
    # the fast teacher's 3 runs fill the slow teacher's 10 seconds, its own 3 take 2 more: 12 seconds, where
    # phases in turn take 10 (teachers) + 1 (calibrations) + 2 (4 students on 2 workers) = 13
    assert max(when.values()) == 12.0


def test_teachers_are_taken_first_and_the_sweep_order_is_kept_within_a_kind(tmp_path: Path) -> None:
    plans = expand(parse_spec(sweep_dict(tmp_path, teachers=TWO_TEACHERS, methods=["ce", "kd"])))
    schedule = Schedule(plans)
    first = schedule.take()
    assert [p.kind for p in first] == ["teacher", "teacher", "distill"]  # the baseline needs no teacher
    assert schedule.take() == [] and schedule.in_flight == 3
    schedule.ended(first[1], "finished")
    ready = schedule.take()
    assert [p.kind for p in ready] == ["calibrate", "distill"]
    assert ready[1].depends_on == (first[1].run_id,)  # the raw-logit student does not wait for calibration


def test_a_failed_run_blocks_what_needs_it_and_what_needs_those(tmp_path: Path) -> None:
    plans = _plans(tmp_path, teachers=TWO_TEACHERS[:1], robustness={"corruptions": ["gaussian_noise"]})
    schedule = Schedule(plans)
    taken = schedule.take()
    teacher = next(p for p in taken if p.kind == "teacher")
    assert {p.kind for p in taken} == {"teacher", "corrupt"}
    for plan in taken:
        schedule.ended(plan, "failed" if plan is teacher else "finished")
    assert schedule.take() == [] and schedule.exhausted
    why = {plan.name: reason for plan, reason in schedule.blocked}
    teacher_failed = "the teacher run it needs did not finish"
    assert why["slow-calibrate"] == why["slow-cnn-kd-none-s0"] == teacher_failed
    assert why["slow-cnn-kd-temperature-s0"] == why["slow-teacher-robust"] == teacher_failed
    assert why["slow-cnn-kd-none-s0-robust"] == "the distill run it needs was blocked"
    # the teacher's robustness run waits for its calibration too (the run it reports on)
    teacher_robust = next(p for p in plans if p.name == "slow-teacher-robust")
    calibrate = next(p for p in plans if p.kind == "calibrate")
    assert calibrate.run_id in teacher_robust.depends_on
    assert len(schedule.blocked) == len(plans) - 2


def test_runs_done_before_count_as_met_and_on_ready_can_find_one_finished(tmp_path: Path) -> None:
    plans = _plans(tmp_path, teachers=TWO_TEACHERS[:1], calibrations=["temperature"])
    teacher, calibrate, student = plans
    found: list[str] = []

    def on_ready(plan: RunPlan) -> bool:
        found.append(plan.kind)
        return plan.kind != "calibrate"  # as if another process had finished it since

    schedule = Schedule([calibrate, student], done=[teacher.run_id], on_ready=on_ready)
    assert schedule.take() == [student] and found == ["calibrate", "distill"]
    assert schedule.found_done == [calibrate]
    schedule.ended(student, "finished")
    assert schedule.exhausted


def test_a_run_another_process_holds_is_watched_in_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    plans = _plans(tmp_path, teachers=TWO_TEACHERS[:1], calibrations=["none"])
    teacher = plans[0]
    other = ResultsStore(db, worker="elsewhere:1/x")  # another sweep process, on another machine
    for plan in plans:
        other.register(plan.run_id, sweep="tiny", kind=plan.kind, name=plan.name, config=plan.config)
    assert other.claim(teacher.run_id)
    lines: list[str] = []
    schedule = Schedule(plans, db_path=db, say=lines.append, poll_s=0.01)
    assert schedule.take() == [teacher]
    schedule.ended(teacher, "skipped")  # the claim failed: another live process runs it
    assert schedule.take() == [] and not schedule.exhausted
    schedule.wait()
    assert lines == ["waiting for 1 run(s) that another sweep process is running"]
    assert other.release(teacher.run_id)  # that process gives it up (interrupted): it is taken again here
    schedule.wait()
    assert schedule.take() == [teacher]
    schedule.ended(teacher, "skipped")
    assert other.claim(teacher.run_id)  # ... and this time it finishes it
    schedule.wait()
    assert schedule.take() == []  # still running there
    other.finish(teacher.run_id, {"accuracy": 0.5})
    other.close()
    schedule.wait()
    assert {p.kind for p in schedule.take()} == {"calibrate", "distill"}


class _VirtualTwoWorkers:
    """An executor of two workers in virtual time (the runs do nothing): it shows the order the sweep's
    runner starts and ends runs in, which real processes make nondeterministic."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.ended: list[str] = []

    def run(self, plans: Schedule | list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]:
        assert isinstance(plans, Schedule)
        with ResultsStore(db_path) as store:
            for clock, plan in _simulate(plans, 2, self.seconds):
                store.claim(plan.run_id)
                store.finish(plan.run_id, {"virtual_end": clock})
                self.ended.append(plan.name)
                yield plan, "finished"

    def close(self) -> None:
        pass


def test_the_sweep_runs_its_graph_and_registers_every_student(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "calikd.db")
    virtual = _VirtualTwoWorkers({"slow": 10.0, "teacher": 2.0})
    monkeypatch.setattr(runner_module, "make_executor", lambda *a, **k: virtual)
    spec = parse_spec(sweep_dict(tmp_path, teachers=TWO_TEACHERS, methods=["kd"]))
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, log=lines.append)
    assert outcome.ok and outcome.counts["finished"] == len(expand(spec))
    assert virtual.ended.index("fast-cnn-kd-temperature-s0") < virtual.ended.index("slow")
    assert "teacher: 2 to run, 0 done before" in lines and "distill: 4 to run, 0 done before" in lines
    with ResultsStore(db) as store:
        students = store.list_runs(sweep="tiny", kind="distill")
    assert len(students) == 4 and all(r.status == "finished" for r in students)


def test_the_longest_teacher_starts_first(tmp_path: Path) -> None:
    teachers = [
        {"name": "small", "model": "resnet8", "epochs": 4},
        {"name": "long", "model": "resnet8", "epochs": 8},
        {"name": "big", "model": "resnet20", "epochs": 4},
    ]
    plans = _plans(tmp_path, teachers=teachers, dataset="fashion-mnist", dataset_options={})
    costs = {p.name: teacher_cost(p) for p in plans if p.kind == "teacher"}
    assert costs["long"] == pytest.approx(2 * costs["small"])  # epochs x the model's multiply-adds
    assert costs["big"] > 2 * costs["small"]  # resnet20: about 2.6 x resnet8's convolutions
    assert [p.name for p in Schedule(plans).take(3)] == ["big", "long", "small"]
    # a dataset whose image shape is known only from its files: no estimate, the file's order
    synthetic = _plans(tmp_path, teachers=teachers)
    assert {teacher_cost(p) for p in synthetic if p.kind == "teacher"} == {0.0}
    assert [p.name for p in Schedule(synthetic).take(3)] == ["small", "long", "big"]


def test_a_student_found_finished_when_its_teacher_reran_is_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(sweep_dict(tmp_path, teachers=TWO_TEACHERS[:1], methods=["kd"], calibrations=["none"]))
    monkeypatch.setattr(runner_module, "make_executor", lambda *a, **k: _VirtualTwoWorkers({}))
    assert run_sweep(spec, db_path=db, log=None).ok
    teacher = expand(spec)[0]
    with ResultsStore(db) as store, store._write() as conn:  # the teacher's row reset, its student's kept
        conn.execute("UPDATE runs SET status = 'pending' WHERE run_id = ?", (teacher.run_id,))
    virtual = _VirtualTwoWorkers({})
    monkeypatch.setattr(runner_module, "make_executor", lambda *a, **k: virtual)
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, log=lines.append)
    assert virtual.ended == ["slow"]  # the teacher alone ran (its calibration was done before)
    assert outcome.counts == {"finished": 1, "done before": 2}
    said = [line.split("] ", 1)[1].split(" (elapsed")[0] for line in lines if line.startswith("  [")]
    assert sorted(said) == [
        "distill slow-cnn-kd-none-s0: finished already",
        "teacher slow: finished",
    ]


def test_a_two_worker_sweep_runs_its_graph_in_two_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(
        sweep_dict(tmp_path, teachers=TWO_TEACHERS, methods=["ce", "kd"], calibrations=["none"])
    )
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, workers=2, log=lines.append)
    plans = expand(spec)
    assert outcome.ok and outcome.counts == {"finished": len(plans)}, lines
    with ResultsStore(db) as store:
        runs = {r.run_id: r for r in store.list_runs(sweep="tiny")}
    assert all(r.status == "finished" and r.attempts == 1 for r in runs.values())
    for plan in plans:  # none started before what it needs had finished
        assert all(runs[d].finished_at <= runs[plan.run_id].started_at for d in plan.depends_on)
    assert sum(line.startswith("  [") for line in lines) == len(plans)


def test_a_run_that_cannot_start_blocks_itself_and_what_needs_it(tmp_path: Path) -> None:
    plans = _plans(tmp_path, teachers=TWO_TEACHERS[:1], calibrations=["none"])
    teacher, calibrate, student = plans
    schedule = Schedule(plans, on_ready=lambda p: "finished from other weights" if p is teacher else True)
    assert schedule.take() == [] and schedule.exhausted
    assert schedule.blocked == [
        (teacher, "finished from other weights"),
        (calibrate, "the teacher run it needs was blocked"),
        (student, "the teacher run it needs was blocked"),
    ]


def test_a_schedule_that_cannot_move_says_why(tmp_path: Path) -> None:
    teacher, calibrate, _ = _plans(tmp_path, teachers=TWO_TEACHERS[:1], calibrations=["none"])
    looped = [dataclasses.replace(teacher, depends_on=(calibrate.run_id,)), calibrate]
    schedule = Schedule(looped)
    assert schedule.take() == []
    with pytest.raises(ConfigError, match="no run can start: 2 runs wait for each other"):
        schedule.wait()
    unwatched = Schedule([teacher])
    unwatched.ended(unwatched.take()[0], "skipped")
    with pytest.raises(ConfigError, match="no results store to watch"):
        unwatched.wait()


class _ClaimingOneWorker:
    """One virtual worker that claims each run as a local worker does: a run another process holds is
    ``skipped``; the others finish at once (nothing is trained)."""

    def run(self, plans: Schedule | list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]:
        assert isinstance(plans, Schedule)
        with ResultsStore(db_path) as store:
            while not plans.exhausted:
                taken = plans.take(1)
                if not taken:
                    plans.wait()
                    continue
                plan = taken[0]
                status = "finished" if store.claim(plan.run_id) else "skipped"
                if status == "finished":
                    store.finish(plan.run_id, {"accuracy": 0.5}, out_dir=plan.out_dir)
                plans.ended(plan, status)
                yield plan, status

    def close(self) -> None:
        pass


def test_a_teacher_another_sweep_finishes_is_linked_in_before_its_students_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(sweep_dict(tmp_path, teachers=TWO_TEACHERS[:1], methods=["kd"], calibrations=["none"]))
    teacher = expand(spec)[0]
    elsewhere = tmp_path / "other-sweep" / "teacher"
    elsewhere.mkdir(parents=True)
    (elsewhere / "weights.bin").write_bytes(b"trained elsewhere")
    other = ResultsStore(db, worker="elsewhere:1/x")  # another sweep process trains the same teacher
    other.register(teacher.run_id, sweep="other", kind="teacher", name="slow", config=teacher.config)
    assert other.claim(teacher.run_id)
    other.close()

    def finish_there() -> None:
        with ResultsStore(db, worker="elsewhere:1/x") as there:
            there.finish(teacher.run_id, {"accuracy": 0.9}, out_dir=str(elsewhere))

    timer = threading.Timer(0.5, finish_there)
    timer.start()
    monkeypatch.setattr(runner_module, "make_executor", lambda *a, **k: _ClaimingOneWorker())
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, log=lines.append)
    timer.join()
    assert outcome.counts == {"skipped": 1, "finished": 2}, lines
    assert "waiting for 1 run(s) that another sweep process is running" in lines
    assert (Path(teacher.out_dir) / ".adopted-from").read_text().strip() == str(elsewhere)
    assert (Path(teacher.out_dir) / "weights.bin").read_bytes() == b"trained elsewhere"


@pytest.mark.parametrize("outcome", ["result", "error"])
def test_a_run_taken_over_meanwhile_is_skipped_not_recorded_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    from calikd.experiments import tasks

    db = str(tmp_path / "calikd.db")
    teacher = _plans(tmp_path, teachers=TWO_TEACHERS[:1])[0]
    with ResultsStore(db) as store:
        store.register(teacher.run_id, sweep="tiny", kind="teacher", name="slow", config=teacher.config)

    def taken_over(plan: RunPlan, threads: int | None = None) -> tasks.RunResult:
        with ResultsStore(db, worker="elsewhere:1/x") as other:  # this worker's heartbeat went stale
            assert other.claim(plan.run_id, stale_after_s=0)
        if outcome == "error":
            raise ValueError("bad luck")
        return tasks.RunResult({"accuracy": 0.5})

    monkeypatch.setattr(tasks, "run_work", taken_over)
    assert tasks.execute(teacher, db) == "skipped"  # the other worker's run: its result or failure counts
    with ResultsStore(db) as store:
        record = store.get(teacher.run_id)
    assert (record.status, record.worker, record.error) == ("running", "elsewhere:1/x", None)
