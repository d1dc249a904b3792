"""Run a sweep: register every run in the results store, then run each as soon as the runs it needs have
finished (:mod:`calikd.experiments.schedule`: a teacher's students start while other teachers still train), on
an executor: ``local`` (``workers`` processes) or ``ray`` (one Ray task per run, see
:mod:`calikd.experiments.ray_executor`). Finished runs are skipped, so a restarted sweep continues; several
sweep processes on one store share the work (each run is claimed by one of them)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from calikd.errors import CalikdError, ConfigError, did_you_mean
from calikd.experiments.overhead import (
    SweepTiming,
    append_timing,
    evaluation_seconds,
    run_seconds,
    train_loop_seconds,
)
from calikd.experiments.plan import RunPlan, expand
from calikd.experiments.progress import SweepProgress
from calikd.experiments.ray_executor import RayExecutor, RayOptions
from calikd.experiments.schedule import KIND_ORDER, Schedule, as_schedule
from calikd.experiments.spec import SweepSpec, spec_to_dict
from calikd.experiments.tasks import execute
from calikd.results import DEFAULT_DB_PATH, ResultsStore, UnknownRunError
from calikd.store.checkpoint import checkpoint_id

PHASES = KIND_ORDER  # the kinds of run, in the order a sweep lists (and prefers) them
#: kinds whose run id does not depend on the sweep's folder: another sweep may have run them already
SHARED_KINDS = ("teacher", "corrupt")
EXECUTORS = ("local", "ray")


@dataclass
class SweepOutcome:
    """Counts of what a sweep did, per status, the runs that failed, and the training share of this
    process (:class:`~calikd.experiments.overhead.SweepTiming`)."""

    name: str
    db_path: str
    counts: Counter = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    timing: SweepTiming | None = None

    @property
    def ok(self) -> bool:
        """No run failed (in this process or before)."""
        return not self.failed


def _hashes(plan: RunPlan) -> dict[str, str]:
    teacher = plan.config.get("teacher") or plan.config.get("checkpoint")
    if teacher and Path(f"{teacher}.json").exists():
        return {"teacher": checkpoint_id(teacher)}
    return {}


class Executor(Protocol):
    """Where runs execute: :meth:`run` takes the ready runs of a :class:`Schedule` (a plain list: its runs
    wait only for each other), reports each end to it and yields each plan with its status (``finished``,
    ``failed`` or ``skipped``) as it ends; :meth:`close` frees what it holds."""

    def run(self, plans: Schedule | list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]: ...

    def close(self) -> None: ...


@dataclass
class LocalExecutor:
    """Runs on this machine, in ``workers`` processes (in this process when 1)."""

    workers: int = 1

    def run(self, plans: Schedule | list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]:
        """Execute ``plans`` as they become ready, yielding each with its status as it ends."""
        threads = max(1, (os.cpu_count() or 1) // self.workers) if self.workers > 1 else None
        return _execute_all(as_schedule(plans, db_path), db_path, self.workers, threads)

    def close(self) -> None:
        """Nothing to free: the process pool lives for one :meth:`run`."""


def make_executor(
    executor: str,
    *,
    workers: int = 1,
    ray_options: RayOptions | Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Executor:
    """The executor named ``executor`` (``local`` or ``ray``), checked before anything runs."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}'{did_you_mean(str(executor), EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if executor == "local":
        if ray_options is not None:
            raise ConfigError(
                "Ray options were given, but the executor is 'local'", hint="use executor 'ray'"
            )
        return LocalExecutor(workers)
    if workers != 1:
        raise ConfigError(
            "workers applies to the local executor only",
            hint="with Ray, as many runs execute at once as the cluster has CPUs/GPUs for "
            "(see the CPUs and GPUs per run)",
        )
    return RayExecutor(ray_options, log=log)


def run_sweep(
    spec: SweepSpec,
    *,
    db_path: str = DEFAULT_DB_PATH,
    workers: int = 1,
    executor: str = "local",
    ray_options: RayOptions | Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
) -> SweepOutcome:
    """Run every run of ``spec`` not finished yet and return the counts (a failure does not stop the rest).

    ``executor``: ``local`` (``workers`` processes on this machine) or ``ray`` (a Ray task per run, with
    ``ray_options``: a :class:`~calikd.experiments.ray_executor.RayOptions` or a mapping of its fields;
    the store's path is made absolute; this process alone opens it, the tasks only run the work).
    """
    say = log or (lambda _msg: None)
    runner = make_executor(executor, workers=workers, ray_options=ray_options, log=say)
    if executor == "ray":
        db_path = os.path.abspath(db_path)
    start = time.perf_counter()
    ran: list[str] = []
    try:
        outcome = _run_phases(spec, db_path, runner, say, ran, workers if executor == "local" else None)
    finally:
        runner.close()
    with ResultsStore(db_path) as store:
        records = [store.get(run_id) for run_id in ran]
    slots = workers if executor == "local" else 1
    outcome.timing = SweepTiming(
        time.perf_counter() - start,
        train_loop_seconds(records),
        len(ran),
        slots,
        evaluation_seconds(records),
        run_seconds(records),
    )
    if ran:
        append_timing(spec.out, outcome.timing)
    say(f"sweep '{spec.name}': {outcome.timing.line()}")
    return outcome


def _run_phases(
    spec: SweepSpec,
    db_path: str,
    runner: Executor,
    say: Callable[[str], None],
    ran: list[str],
    slots: int | None = 1,
) -> SweepOutcome:
    """Run the sweep's runs as they become ready; the ids of the runs this process finished are appended
    to ``ran``."""
    plans = expand(spec)
    outcome = SweepOutcome(spec.name, db_path)
    with ResultsStore(db_path) as store:
        store.add_sweep(spec.name, spec_to_dict(spec))
        left = store.retain_sweep_runs(spec.name, [p.run_id for p in plans])
        for plan in plans:
            if plan.kind != "distill":
                store.register(
                    plan.run_id, sweep=spec.name, kind=plan.kind, name=plan.name, config=plan.config
                )
        done = _finished_before(store, spec.name, plans, outcome, say)
    say(f"sweep '{spec.name}': {len(plans)} runs in {db_path}")
    if left:
        say(
            f"sweep '{spec.name}': {left} runs of an earlier spec are no longer part of it "
            "(kept in the store; its report leaves them out)"
        )
    todo = [p for p in plans if p.run_id not in done]
    for kind in PHASES:
        of_kind = [p for p in plans if p.kind == kind]
        if of_kind:
            ready = sum(p.kind == kind for p in todo)
            say(f"{kind}: {ready} to run, {len(of_kind) - ready} done before")

    def register_ready(plan: RunPlan) -> bool | str:
        """Before a run starts (its teacher's weights are known now): True to run it, False if it is
        finished already (another sweep process ran it), or why a student cannot be registered (finished
        from other weights, an unreadable checkpoint)."""
        with ResultsStore(db_path) as store:
            try:
                finished = _finished_already(store, spec.name, plan, say)
            except CalikdError as exc:
                if plan.kind != "distill":
                    raise
                return str(exc)
        if finished:
            outcome.counts["done before"] += 1
        return not finished

    def adopt_if_shared(plan: RunPlan) -> None:
        if plan.kind in SHARED_KINDS:
            with ResultsStore(db_path) as store:
                _adopt(plan, store.get(plan.run_id).out_dir, say)

    schedule = Schedule(
        todo,
        done=done,
        db_path=db_path,
        on_ready=register_ready,
        on_finished_elsewhere=adopt_if_shared,
        say=say,
    )
    progress, count, counted = SweepProgress((p.kind for p in todo), slots), 0, set()

    def report_unrun() -> None:
        """Print the runs that will not run: blocked, or found finished when they became ready."""
        nonlocal count
        while schedule.found_done:
            plan = schedule.found_done.pop(0)
            count += 1
            eta = progress.ended(plan.kind)
            say(f"  [{count}/{len(todo)}] {plan.kind} {plan.name}: finished already{eta}")
        while schedule.blocked:
            plan, why = schedule.blocked.pop(0)
            count += 1
            outcome.counts["blocked"] += 1
            outcome.failed.append(f"{plan.name} ({why})")
            if plan.kind == "distill":  # listed with the sweep (pending), as a run that did not happen
                with ResultsStore(db_path) as store:
                    store.register(
                        plan.run_id, sweep=spec.name, kind=plan.kind, name=plan.name, config=plan.config
                    )
            eta = progress.ended(plan.kind)
            say(f"  [{count}/{len(todo)}] {plan.kind} {plan.name}: blocked ({why}){eta}")

    for plan, result in runner.run(schedule, db_path):
        report_unrun()
        again = plan.run_id in counted  # skipped (another process held it), then taken again here
        counted.add(plan.run_id)
        if again:
            outcome.counts["skipped"] -= 1
            if outcome.counts["skipped"] <= 0:
                del outcome.counts["skipped"]
        else:
            count += 1
        outcome.counts[result] += 1
        if result == "finished":
            ran.append(plan.run_id)
        if result == "failed":
            outcome.failed.append(plan.name)
        seconds = None
        if result in ("finished", "failed"):
            with ResultsStore(db_path) as store:
                seconds = store.get(plan.run_id).wall_time_s
        eta = progress.ended(plan.kind, seconds, again=again)
        say(f"  [{count}/{len(todo)}] {plan.kind} {plan.name}: {result}{eta}")
    report_unrun()
    return outcome


def _finished_before(
    store: ResultsStore, sweep: str, plans: list[RunPlan], outcome: SweepOutcome, say: Callable[[str], None]
) -> set[str]:
    """Ids of the runs finished before this sweep process started (counted ``done before``). A student
    counts only when its teacher runs are done too; one not finished is registered when it becomes ready."""
    done: set[str] = set()
    for plan in plans:  # in the sweep's order: a run's dependencies come before it
        if plan.kind == "distill" and not (
            all(d in done for d in plan.depends_on) and _recorded_as(store, plan, "finished")
        ):
            continue
        if _finished_already(store, sweep, plan, say):
            done.add(plan.run_id)
            outcome.counts["done before"] += 1
    return done


def _recorded_as(store: ResultsStore, plan: RunPlan, status: str) -> bool:
    try:
        return store.get(plan.run_id).status == status
    except UnknownRunError:  # a student is registered once its teacher is known
        return False


def _finished_already(store: ResultsStore, sweep: str, plan: RunPlan, say: Callable[[str], None]) -> bool:
    """Whether ``plan`` has finished (here or in another sweep process). A student is registered first, with
    its teacher's weights id (which refuses a student finished from other weights); a shared run finished
    in another sweep's folder is linked into this one's."""
    if plan.kind == "distill":
        _register_student(store, sweep, plan)
    record = store.get(plan.run_id)
    if record.status != "finished":
        return False
    if plan.kind in SHARED_KINDS:
        _adopt(plan, record.out_dir, say)
    return True


def _register_student(store: ResultsStore, sweep: str, plan: RunPlan) -> None:
    store.register(
        plan.run_id, sweep=sweep, kind=plan.kind, name=plan.name, config=plan.config, hashes=_hashes(plan)
    )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no second copy of large files (corrupted sets) on the same filesystem
    except OSError:
        shutil.copy2(src, dst)


def _adopt(plan: RunPlan, done_in: str | None, say: Callable[[str], None]) -> None:
    """A teacher or corrupted set finished by another sweep (same config, so same run id) is linked into this
    sweep's folder, so that this sweep's checkpoint paths (and the run ids derived from them) hold."""
    if not done_in or Path(done_in).resolve() == Path(plan.out_dir).resolve():
        return
    if not Path(done_in).is_dir():
        raise ConfigError(
            f"run '{plan.name}' ({plan.run_id[:8]}) finished in '{done_in}', which no longer exists",
            hint="re-run it: `calikd runs` shows it; delete its row or restore the folder",
        )
    if Path(plan.out_dir, ".adopted-from").exists() or Path(plan.out_dir, "last.json").exists():
        return
    shutil.copytree(done_in, plan.out_dir, copy_function=_link_or_copy, dirs_exist_ok=True)
    Path(plan.out_dir, ".adopted-from").write_text(f"{done_in}\n")
    say(f"  {plan.kind} {plan.name}: reused from {done_in}")


def _execute_all(
    schedule: Schedule, db_path: str, workers: int, threads: int | None
) -> Iterator[tuple[RunPlan, str]]:
    """Execute the runs of ``schedule`` on this machine as they become ready, at most ``workers`` at once,
    yielding each with its status as it ends (the runs it unblocks are started first)."""
    if workers <= 1:
        while True:
            plans = schedule.take(1)
            if not plans:
                if schedule.settled():
                    return
                continue
            status = execute(plans[0], db_path)
            schedule.ended(plans[0], status)
            yield plans[0], status
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures: dict[concurrent.futures.Future[str], RunPlan] = {}
        ended: list[tuple[RunPlan, str]] = []
        while True:
            for plan in schedule.take(workers - len(futures)):
                futures[pool.submit(execute, plan, db_path, threads)] = plan
            yield from ended
            ended = []
            if not futures:
                if schedule.settled():
                    return
                continue
            done, _ = concurrent.futures.wait(
                futures, timeout=schedule.wake_after, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                plan, status = futures.pop(future), future.result()
                schedule.ended(plan, status)
                ended.append((plan, status))
