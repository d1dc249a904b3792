"""Run a sweep's runs as Ray tasks (``calikd sweep --executor ray``; needs ``pip install 'calikd[ray]'``).

Each run is one Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; it calls
:func:`calikd.experiments.tasks.execute`, which claims the run in the results store, records its metrics or
its error and skips a run already finished, exactly as a local worker process does. Ray is imported only
here, and only when this executor is used. The store and the run folders must be reachable at the same
paths from every node (the store's path is made absolute; tasks work in the driver's working directory).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.spec import RunPlan
from calikd.store.results import DEFAULT_STALE_AFTER_S, ClaimLostError, ResultsStore

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


def run_in_task(plan: RunPlan, db_path: str, threads: int, gpus: float, cwd: str) -> str:
    """The body of a Ray task: run ``plan`` with :func:`~calikd.experiments.tasks.execute` in ``cwd``."""
    from calikd.experiments.tasks import execute

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
    return execute(plan, db_path, threads)


def record_task_error(db_path: str, plan: RunPlan, error: BaseException, *, worker_died: bool) -> str:
    """Status of a run whose Ray task raised past :func:`execute` (``worker_died`` False) or whose worker
    died (killed, out of memory, node lost): recorded as failed with the error, unless it finished or
    another live worker holds it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, ClaimLostError):  # its heartbeat went stale and another worker runs it now
        return "skipped"
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(error).__name__}: {error}"
    with ResultsStore(db_path) as store:
        if store.get(plan.run_id).status == "finished":
            return "finished"
        # a dead worker's claim is taken over now rather than after the stale timeout
        stale_after_s = 0.0 if worker_died else DEFAULT_STALE_AFTER_S
        if not store.claim(plan.run_id, stale_after_s=stale_after_s):
            return "skipped"
        store.fail(plan.run_id, f"the Ray task failed: {detail}")
    return "failed"


class RayExecutor:
    """Runs plans as Ray tasks; connects on the first non-empty :meth:`run`, disconnects in :meth:`close`
    (shutting Ray down only if it started it)."""

    def __init__(
        self, options: RayOptions | Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.options = RayOptions.coerce(options)
        self._ray = import_ray()
        self._say = log or (lambda _msg: None)
        self._remote: Any = None
        self._started = False

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

    def run(self, plans: list[RunPlan], db_path: str) -> Iterator[tuple[RunPlan, str]]:
        """Submit ``plans`` as Ray tasks and yield each with its status as it ends."""
        if not plans:
            return
        if self._remote is None:
            self._connect()
        ray, opts = self._ray, self.options
        db_path, cwd = os.path.abspath(db_path), os.getcwd()
        pending = {
            self._remote.options(
                num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run, name=f"calikd {plan.kind} {plan.name}"
            ).remote(plan, db_path, opts.threads, opts.gpus_per_run, cwd): plan
            for plan in plans
        }
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                plan = pending.pop(ready[0])
                try:
                    status = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    died = not isinstance(exc, ray.exceptions.RayTaskError)
                    status = record_task_error(db_path, plan, exc, worker_died=died)
                yield plan, status
        finally:  # interrupted (Ctrl-C) or abandoned: the running runs go back to pending
            for ref in pending:
                ray.cancel(ref)  # a KeyboardInterrupt in the task, where execute() releases the run
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)

    def close(self) -> None:
        """Disconnect from Ray, shutting it down if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._remote = None
