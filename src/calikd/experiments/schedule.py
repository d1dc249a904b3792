"""Which runs of a sweep may start now: a run is ready once every run it depends on has finished.

A sweep's runs form a graph (a student waits for its teacher, and for the teacher's calibration when it
distils from the calibrated teacher; a robustness run for the run it evaluates and the corrupted set), not
a sequence of phases: a student of a teacher that has finished starts while another teacher still trains.
Executors take ready runs (:meth:`Schedule.take`, the earliest kind first: teachers, which the most runs
wait for, the longest first by :func:`teacher_cost`, so that the longest chain starts at once; then
calibrations, students, corrupted sets, robustness runs, each in the sweep's order),
run them and report each end (:meth:`Schedule.ended`). A run whose dependency failed (or was blocked) is
blocked, with the reason. A run another sweep process holds (``skipped``) is watched in the store: its
dependents start when it finishes there, and it is taken again if that process lets it go.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from calikd.data.registry import get_spec
from calikd.errors import ConfigError
from calikd.experiments.plan import RunPlan
from calikd.models import create_model
from calikd.results import ResultsStore

KIND_ORDER = ("teacher", "calibrate", "distill", "corrupt", "robustness")

#: called once per run when its dependencies have finished, before it is handed out: True to run it, False
#: when it turned out to be finished already (counted as done, not run), or a text: why it cannot run
ReadyHook = Callable[[RunPlan], "bool | str"]


@dataclass
class Schedule:
    """The runs of a sweep still to run, and what each waits for.

    ``done``: ids of runs finished before (dependencies met); a dependency that is neither among ``plans``
    nor in ``done`` is outside this schedule and counts as met (the run itself checks its inputs).
    ``db_path``: the store watched for runs another sweep process holds; ``on_finished_elsewhere`` is called
    for each such run found finished there, before the runs that need it start.
    """

    plans: list[RunPlan]
    done: Iterable[str] = ()
    db_path: str | None = None
    on_ready: ReadyHook | None = None
    on_finished_elsewhere: Callable[[RunPlan], None] | None = None
    say: Callable[[str], None] | None = None
    poll_s: float = 2.0
    #: runs that cannot run, each with why (a dependency failed or was blocked), in the order found
    blocked: list[tuple[RunPlan, str]] = field(default_factory=list, init=False)
    #: runs found finished when they became ready (``on_ready`` said so)
    found_done: list[RunPlan] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._finished: set[str] = set(self.done)
        self._failed: dict[str, str] = {}  # run id -> "failed" or "blocked"
        self._by_id = {p.run_id: p for p in self.plans}
        self._waiting: dict[str, RunPlan] = dict(self._by_id)
        self._rank = {
            p.run_id: (_kind_rank(p.kind), -teacher_cost(p) if p.kind == "teacher" else 0.0, i)
            for i, p in enumerate(self.plans)
        }
        self._taken: set[str] = set()
        self._elsewhere: dict[str, RunPlan] = {}
        self._next_poll = 0.0
        self._announced = False

    @property
    def exhausted(self) -> bool:
        """Nothing left: every run ended, was blocked or found done, and none is held elsewhere."""
        return not (self._waiting or self._taken or self._elsewhere)

    @property
    def in_flight(self) -> int:
        """Runs taken and not ended yet."""
        return len(self._taken)

    def take(self, limit: int | None = None) -> list[RunPlan]:
        """The ready runs (at most ``limit``), earliest kind first; they count as in flight until
        :meth:`ended`."""
        self._poll_elsewhere()
        out: list[RunPlan] = []
        found_done = True
        while found_done and (limit is None or len(out) < limit):  # a run found done may make others ready
            found_done = False
            for plan in sorted(self._resolve(), key=lambda p: self._rank[p.run_id]):
                if limit is not None and len(out) >= limit:
                    break
                del self._waiting[plan.run_id]
                verdict = True if self.on_ready is None else self.on_ready(plan)
                if verdict is False:
                    self._finished.add(plan.run_id)
                    self.found_done.append(plan)
                    found_done = True
                    continue
                if isinstance(verdict, str):
                    self._failed[plan.run_id] = "blocked"
                    self.blocked.append((plan, verdict))
                    found_done = True  # its dependents are blocked in the next pass
                    continue
                self._taken.add(plan.run_id)
                out.append(plan)
        return out

    def ended(self, plan: RunPlan, status: str) -> None:
        """Record how a taken run ended: ``finished``, ``failed`` or ``skipped`` (another process has it)."""
        self._taken.discard(plan.run_id)
        if status == "finished":
            self._finished.add(plan.run_id)
        elif status == "skipped":
            self._elsewhere[plan.run_id] = plan
        else:
            self._failed[plan.run_id] = "failed"

    @property
    def wake_after(self) -> float | None:
        """How long an executor may wait for its own runs to end: :attr:`poll_s` while runs are held by
        another process (what their ends make ready starts then), else as long as they take (None)."""
        return self.poll_s if self._elsewhere else None

    def settled(self) -> bool:
        """For an executor with nothing in flight and nothing taken: True when the schedule is done, else
        wait for runs held elsewhere (:meth:`wait`) and False."""
        if self.exhausted:
            return True
        self.wait()
        return False

    def wait(self) -> None:
        """Sleep while the only runs left wait for runs that another sweep process holds."""
        if not self._elsewhere:
            if self._taken or not self._waiting:
                return
            left = ", ".join(sorted(p.name for p in self._waiting.values())[:5])
            raise ConfigError(
                f"no run can start: {len(self._waiting)} runs wait for each other ({left})",
                hint="a run's depends_on must not lead back to it",
            )
        if self.db_path is None:
            raise ConfigError(
                "runs are held by another sweep process, but the schedule has no results store to watch",
                hint="give the Schedule a db_path",
            )
        if not self._announced and self.say is not None:
            self.say(f"waiting for {len(self._elsewhere)} run(s) that another sweep process is running")
            self._announced = True
        time.sleep(max(0.05, min(self.poll_s, self._next_poll - time.monotonic())))

    # ------------------------------------------------------------------------------------------ internals
    def _resolve(self) -> list[RunPlan]:
        """Block the waiting runs whose dependencies failed (until none is left to block); the ready ones."""
        changed = True
        while changed:
            changed = False
            for run_id, plan in list(self._waiting.items()):
                bad = [d for d in plan.depends_on if d in self._failed]
                if bad:
                    del self._waiting[run_id]
                    self._failed[run_id] = "blocked"
                    how = "did not finish" if self._failed[bad[0]] == "failed" else "was blocked"
                    self.blocked.append((plan, f"the {self._by_id[bad[0]].kind} run it needs {how}"))
                    changed = True
        return [p for p in self._waiting.values() if all(self._met(d) for d in p.depends_on)]

    def _met(self, dep: str) -> bool:
        return dep in self._finished or dep not in self._by_id

    def _poll_elsewhere(self) -> None:
        """Look up the runs another process held: finished, failed, or given up (taken again here)."""
        if not self._elsewhere or self.db_path is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.poll_s
        with ResultsStore(self.db_path) as store:
            records = {run_id: store.get(run_id) for run_id in self._elsewhere}
        for run_id, record in records.items():
            if record.status == "running" and not record.is_stale():
                continue
            plan = self._elsewhere.pop(run_id)
            if record.status == "finished":
                if self.on_finished_elsewhere is not None:
                    self.on_finished_elsewhere(plan)
                self._finished.add(run_id)
            elif record.status == "failed":
                self._failed[run_id] = "failed"
            else:  # pending again or stale: that process let it go, so run it here
                self._waiting[run_id] = plan


def replay(
    schedule: Schedule, workers: int, seconds: Callable[[RunPlan], float]
) -> list[tuple[float, RunPlan]]:
    """Run ``schedule`` on ``workers`` in virtual time, each run taking ``seconds(plan)`` and finishing: the
    (end time, plan) of every run, in the order they end (what a sweep takes, from known run times)."""
    clock, running, ended, started = 0.0, [], [], itertools.count()  # running: heap of (end, start no., plan)
    while True:
        for plan in schedule.take(workers - len(running)):
            heapq.heappush(running, (clock + seconds(plan), next(started), plan))
        if not running:
            if schedule.settled():
                return ended
            continue
        clock, _, plan = heapq.heappop(running)
        schedule.ended(plan, "finished")
        ended.append((clock, plan))


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def as_schedule(plans: Schedule | list[RunPlan], db_path: str) -> Schedule:
    """``plans`` as a :class:`Schedule` watching the store at ``db_path`` (a plain list: its runs wait only
    for each other)."""
    if not isinstance(plans, Schedule):
        return Schedule(list(plans), db_path=db_path)
    if plans.db_path is None:
        plans.db_path = db_path
    return plans


def teacher_cost(plan: RunPlan) -> float:
    """Relative training cost of a teacher run: epochs x multiply-accumulates of its model on one image of its
    dataset's shape (0 when unknown: a foreign dataset, a model that cannot be built here)."""
    config = plan.config
    try:
        epochs = float(config.get("epochs") or 1)
        kwargs = tuple(sorted((config.get("model_kwargs") or {}).items()))
        return epochs * _macs(str(config["model"]), kwargs, str(config.get("dataset")))
    except Exception:  # an estimate only: the order falls back to the sweep file's
        return 0.0


@functools.lru_cache(maxsize=64)
def _macs(model: str, kwargs: tuple[tuple[str, Any], ...], dataset: str) -> float:
    info = get_spec(dataset).info
    if info is None:
        return 0.0
    net = create_model(model, info.num_classes, info.in_channels, **dict(kwargs)).eval()
    total = [0.0]

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total[0] += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net(torch.zeros(1, info.in_channels, *info.image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]
