"""Run a sweep's runs as Ray tasks (``calikd sweep --executor ray``; needs ``pip install 'calikd[ray]'``).

Each run is one Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs. The driver (the
process running the sweep) alone opens the results store: it claims each run before submitting its task,
with the same claim and owner semantics as a local worker (so another sweep process on the same store
sees the run as held and does not run it too), refreshes the heartbeat of every run in flight while it
waits for the tasks, and records what each task returns (metrics, artifacts, wall time) or how it failed:
the run's own error as a local worker records it, or a message saying that its Ray worker died or its
task was cancelled. A run already finished, or held by another live sweep process, is skipped. Ctrl-C
cancels the tasks in flight and hands their runs back (pending). A task only runs the work
(:func:`calikd.experiments.tasks.run_work`) and never sees the store's path.

Ray is imported only here, and only when this executor is used. Tasks write their run folders themselves,
working in the driver's working directory, so on a multi-node cluster the run folders (and datasets) must
be reachable at the same paths from every node; the store only needs to be on the driver's machine. A run
waiting in Ray's queue shows as running in the store (it is claimed when submitted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.plan import RunPlan
from calikd.experiments.schedule import Schedule, as_schedule
from calikd.experiments.tasks import RunResult, error_detail, record_failure, record_result, run_work
from calikd.results import DEFAULT_HEARTBEAT_S, ClaimLostError, ResultsStore

INSTALL_HINT = "pip install 'calikd[ray]'"
_DEVICE_KINDS = ("teacher", "distill")  # run kinds whose config chooses a device
CANCEL_WAIT_S = 10.0  # how long an interrupted sweep waits for its cancelled tasks to hand their runs back


@dataclass(frozen=True)
class RayOptions:
    """Where Ray runs execute and what each asks for.

    ``address``: ``None`` attaches to the local instance (``RAY_ADDRESS`` or the latest ``ray start`` on this
    machine) or starts one; ``"auto"`` an existing cluster; else a cluster address (``host:6379``,
    ``ray://host:10001``). With ``gpus_per_run`` > 0 each run uses its GPU (device ``auto``); with 0 it
    sees no GPU and runs on CPU. Torch uses ``cpus_per_run`` threads (at least one).
    """

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cpus_per_run", "gpus_per_run"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"ray {name} must be a number >= 0, got {value!r}")
        if self.cpus_per_run == 0 and self.gpus_per_run == 0:
            raise ConfigError(
                "a Ray run must ask for some CPUs or GPUs (cpus_per_run and gpus_per_run are 0)"
            )

    @classmethod
    def coerce(cls, options: RayOptions | Mapping[str, Any] | None) -> RayOptions:
        """``options`` as :class:`RayOptions` (a mapping of its fields, or ``None`` for the defaults)."""
        if options is None or isinstance(options, RayOptions):
            return options or cls()
        if not isinstance(options, Mapping):
            raise ConfigError(f"ray_options must be RayOptions or a mapping, got {type(options).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in names:
                raise ConfigError(f"unknown Ray option '{key}'{did_you_mean(str(key), names)}")
        return cls(**options)

    @property
    def threads(self) -> int:
        """Torch threads of a run: its CPU request, at least one."""
        return max(1, math.floor(self.cpus_per_run))


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"the ray executor needs Ray, which is not installed ({exc})",
            hint=f"{INSTALL_HINT}, or use --executor local",
        ) from exc
    return ray


def run_in_task(plan: RunPlan, threads: int, gpus: float, cwd: str) -> RunResult:
    """The body of a Ray task: run ``plan`` with :func:`~calikd.experiments.tasks.run_work` in ``cwd`` and
    return its result (the driver records it; a task never opens the results store)."""
    if not os.path.isdir(cwd):
        raise ConfigError(
            f"the sweep's working directory '{cwd}' does not exist on node {socket.gethostname()}",
            hint="start the sweep from a folder on a filesystem that every node mounts at the same path",
        )
    os.chdir(cwd)  # relative run folders and checkpoints resolve as in the driver
    if gpus > 0:  # Ray set CUDA_VISIBLE_DEVICES to this task's GPUs
        if plan.kind in _DEVICE_KINDS:
            plan = dataclasses.replace(plan, config={**plan.config, "device": "auto"})
    else:  # Ray leaves the GPUs visible to a task that asked for none: keep it off them
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return run_work(plan, threads)


def task_error_detail(ray: Any, error: BaseException) -> str:
    """The error recorded for a run whose Ray task did not return: the run's own error (as a local worker
    records it) when the task raised, else what happened to the task or its worker."""
    cause = getattr(error, "cause", None)
    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        error = cause  # what the task raised (a TaskCancelledError if it was cancelled while running)
    if isinstance(error, ray.exceptions.TaskCancelledError):
        what = "its Ray task was cancelled"
    elif isinstance(error, ray.exceptions.RayTaskError) or not isinstance(error, ray.exceptions.RayError):
        return error_detail(error)  # the run raised
    else:  # the worker was killed, ran out of memory, or its node was lost
        what = "the Ray worker running it died"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{what} ({type(error).__name__}: {first_line})" if first_line else what


class RayExecutor:
    """Runs plans as Ray tasks, claiming and recording them in the store itself; connects on the first
    non-empty :meth:`run`, disconnects in :meth:`close` (shutting Ray down only if it started it)."""

    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # how often the driver refreshes the heartbeats of its runs

    def __init__(
        self, options: RayOptions | Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.options = RayOptions.coerce(options)
        self._ray = import_ray()
        self._say = log or (lambda _msg: None)
        self._remote: Any = None
        self._started = False
        self._next_beat = 0.0  # when the runs in flight are heartbeaten next

    def _connect(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.options.address, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot connect to Ray at {self.options.address or 'a local instance'}: {exc}",
                    hint="start one with `ray start --head`, or leave --ray-address out to start a local one",
                ) from exc
            self._started = True
        self._check_fits()
        self._remote = ray.remote(max_retries=0)(run_in_task)

    def _check_fits(self) -> None:
        """Say what the cluster has; refuse runs that no node can hold (warn on a cluster given by address,
        which may grow)."""
        want = {"CPU": self.options.cpus_per_run, "GPU": self.options.gpus_per_run}
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        total = {k: sum(node.get(k, 0) for node in nodes) for k in want}
        self._say(
            f"ray: {len(nodes)} node(s), {total['CPU']:g} CPUs, {total['GPU']:g} GPUs; "
            f"each run asks for {want['CPU']:g} CPU(s) and {want['GPU']:g} GPU(s)"
        )
        if any(all(node.get(k, 0) >= v for k, v in want.items()) for node in nodes):
            return
        message = f"no Ray node has {want['CPU']:g} CPU(s) and {want['GPU']:g} GPU(s) for a run"
        if self.options.address is None:  # a local instance: the runs would wait forever
            raise ConfigError(
                message,
                hint="lower --ray-cpus-per-run / --ray-gpus-per-run, or give --ray-address of a cluster "
                "that has (or adds) such nodes",
            )
        self._say(f"warning: {message} now; the runs wait until such a node joins the cluster")

    def run(self, plans: Schedule | list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]:
        """Claim the runs of ``plans`` in the store at ``db_path`` as they become ready, run them as Ray
        tasks and yield each with its status as it ends (``skipped`` at once for one that is finished or
        another live sweep process holds). The runs an ended one unblocks are submitted before it is
        yielded."""
        schedule = as_schedule(plans, db_path)
        if schedule.exhausted:
            return
        if self._remote is None:
            self._connect()
        cwd = os.getcwd()
        with ResultsStore(os.path.abspath(db_path)) as store:
            in_flight: dict[Any, RunPlan] = {}
            self._next_beat = time.monotonic() + self.heartbeat_s
            try:
                ended: list[tuple[RunPlan, str]] = []
                while True:
                    for plan in schedule.take():
                        if store.claim(plan.run_id):
                            try:
                                in_flight[self._submit(plan, cwd)] = plan
                            except BaseException:
                                store.release(plan.run_id)
                                raise
                        else:
                            schedule.ended(plan, "skipped")
                            ended.append((plan, "skipped"))
                    yield from ended
                    ended = []
                    if not in_flight:
                        if schedule.settled():
                            return
                        continue
                    for plan, status in self._wait_some(store, in_flight, schedule.wake_after):
                        schedule.ended(plan, status)
                        ended.append((plan, status))
            finally:  # interrupted (Ctrl-C) or abandoned: the runs in flight go back to pending
                self._hand_back(store, in_flight)

    def _submit(self, plan: RunPlan, cwd: str) -> Any:
        opts = self.options
        return self._remote.options(
            num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run, name=f"calikd {plan.kind} {plan.name}"
        ).remote(plan, opts.threads, opts.gpus_per_run, cwd)

    def _wait_some(
        self, store: ResultsStore, in_flight: dict[Any, RunPlan], timeout: float | None = None
    ) -> list[tuple[RunPlan, str]]:
        """Wait until some runs of ``in_flight`` end (removed from it), or ``timeout`` seconds, and return
        them with their recorded status, heartbeating those still running every :attr:`heartbeat_s` seconds
        (a run another sweep process took over meanwhile is cancelled here and returned as ``skipped``)."""
        ray = self._ray
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            wake = self._next_beat if give_up is None else min(self._next_beat, give_up)
            timeout = max(0.0, wake - time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=timeout)
            out: list[tuple[RunPlan, str]] = []
            if time.monotonic() >= self._next_beat:
                for ref, plan in list(in_flight.items()):
                    if ref not in ready and not self._beat(store, plan):
                        del in_flight[ref]  # another sweep process runs it now: stop this copy
                        ray.cancel(ref)
                        out.append((plan, "skipped"))
                self._next_beat = time.monotonic() + self.heartbeat_s
            for ref in ready:
                plan = in_flight.pop(ref)
                out.append((plan, self._record(store, plan, ref)))
            if out or (give_up is not None and time.monotonic() >= give_up):
                return out

    def _beat(self, store: ResultsStore, plan: RunPlan) -> bool:
        """Refresh ``plan``'s heartbeat; False if another worker took the run over (it went stale)."""
        try:
            if store.heartbeat(plan.run_id):
                return True
        except sqlite3.OperationalError:  # the store stayed locked for its busy timeout: beat next time
            return True
        self._say(f"  {plan.kind} {plan.name}: another sweep process took it over (stale heartbeat)")
        return False

    def _record(self, store: ResultsStore, plan: RunPlan, ref: Any) -> str:
        """Record the run of the ended task ``ref``: ``finished``, ``failed``, or ``skipped`` if another
        worker took it over meanwhile."""
        try:
            result = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            return record_failure(store, plan, task_error_detail(self._ray, exc))
        try:
            return record_result(store, plan, result)
        except ClaimLostError:
            return "skipped"

    def _hand_back(self, store: ResultsStore, in_flight: dict[Any, RunPlan]) -> None:
        """Cancel the tasks still in flight, wait a little for them to stop (then kill their workers), and
        give their runs back as pending (recording those whose task returned meanwhile)."""
        if not in_flight:
            return
        ray = self._ray
        for ref in in_flight:
            ray.cancel(ref)  # a KeyboardInterrupt in the task
        ready, late = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=CANCEL_WAIT_S)
        for ref in late:  # no later write to a run folder once its run is pending again
            ray.cancel(ref, force=True)
        for ref, plan in in_flight.items():
            try:
                result = ray.get(ref, timeout=0) if ref in ready else None
            except ray.exceptions.RayError:
                result = None
            if not isinstance(result, RunResult):
                store.release(plan.run_id)
                continue
            with contextlib.suppress(ClaimLostError):  # it returned before the cancel reached it
                record_result(store, plan, result)
        in_flight.clear()

    def close(self) -> None:
        """Disconnect from Ray, shutting it down if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._remote = None
