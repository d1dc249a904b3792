"""The job queue of the results store: claims, heartbeats, worker liveness and giving runs back.

A run is leased to one worker at a time: :meth:`Leases.claim` takes a pending or failed run, or a running
one whose worker died (stale heartbeat, or a process of this machine that is gone:
:func:`~calikd.utils.process.worker_is_gone`); :meth:`Leases.heartbeat` / :meth:`Leases.keep_alive` keep
the lease; :meth:`Leases.fail` and :meth:`Leases.release` end it (``finish`` lives with the records, in
:mod:`calikd.results.records`). A worker whose lease was taken over can no longer end it
(:class:`ClaimLostError`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator

from calikd.results.connection import Connection
from calikd.results.schema import ResultsStoreError, UnknownRunError
from calikd.utils.process import default_worker, worker_is_gone

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_STALE_AFTER_S",
    "MAX_ERROR_CHARS",
    "ClaimLostError",
    "KeepAlive",
    "Leases",
]

DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 300.0  # ten missed heartbeats of keep_alive
MAX_ERROR_CHARS = 20_000


class ClaimLostError(ResultsStoreError):
    """This worker no longer holds the run: another worker reclaimed it after its heartbeat went stale."""


class KeepAlive:
    """Handle of :meth:`Leases.keep_alive`: ``lost`` is set once another worker took the run over."""

    def __init__(self) -> None:
        self.lost = threading.Event()


class Leases(Connection):
    """The job-queue part of :class:`calikd.results.ResultsStore` (``_worker``, ``_token`` and
    ``_claims`` are set by its ``__init__``)."""

    _worker: str | None
    _token: str
    _claims: dict[str, str]  # run id -> the worker name this store claimed it as

    @property
    def worker(self) -> str:
        """The worker name used by :meth:`claim` when none is given."""
        return self._worker or f"{default_worker()}/{self._token}"

    def _forked(self) -> None:
        self._claims.clear()  # the parent's claims are not this process's
        super()._forked()

    def _owned(self, conn: sqlite3.Connection, run_id: str) -> tuple[str, str | None, str, float | None]:
        """(status, holder, this worker, started_at) of ``run_id``; raises for an unknown id."""
        row = conn.execute(
            "SELECT status, worker, started_at FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise UnknownRunError(f"no run '{run_id}' in '{self.path}'", hint="register() it first")
        return row[0], row[1], self._claims.get(run_id, self.worker), row[2]

    def _lost(self, run_id: str, status: str, holder: str | None, worker: str) -> ClaimLostError:
        if status == "running":
            return ClaimLostError(
                f"run '{run_id}' is now held by {holder}, not by {worker}: it was reclaimed after its "
                "heartbeat went stale",
                hint="keep the heartbeat fresh with ResultsStore.keep_alive(), or raise stale_after_s",
            )
        return ClaimLostError(
            f"run '{run_id}' is {status}, not running for {worker}",
            hint="claim() the run before finishing it",
        )

    def claim(
        self,
        run_id: str,
        worker: str | None = None,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        retry_failed: bool = True,
    ) -> bool:
        """Atomically mark the run as running for ``worker`` (default :attr:`worker`); True if claimed.

        Claims a pending run, a failed one (unless ``retry_failed`` is False) and a running one whose
        heartbeat is older than ``stale_after_s`` seconds, whose worker process is gone
        (:func:`worker_is_gone`) or that this same worker holds. Returns False for a finished run and for
        one that another live worker holds.
        """
        worker = worker or self.worker
        now = time.time()
        with self._write() as conn:
            status, holder, _, _ = self._owned(conn, run_id)
            beat = conn.execute("SELECT heartbeat_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            if status == "finished" or (status == "failed" and not retry_failed):
                return False
            fresh = beat is not None and now - beat < stale_after_s
            if status == "running" and holder != worker and fresh and not worker_is_gone(holder):
                return False
            conn.execute(
                "UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ?, "
                "finished_at = NULL, error = NULL, wall_time_s = NULL, attempts = attempts + 1 "
                "WHERE run_id = ?",
                (worker, now, now, run_id),
            )
        self._claims[run_id] = worker
        return True

    def heartbeat(self, run_id: str) -> bool:
        """Refresh the heartbeat of a run this worker holds; False if it no longer holds it."""
        worker = self._claims.get(run_id, self.worker)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running' AND worker = ?",
                (time.time(), run_id, worker),
            )
        return cur.rowcount == 1

    @contextlib.contextmanager
    def keep_alive(self, run_id: str, every_s: float = DEFAULT_HEARTBEAT_S) -> Iterator[KeepAlive]:
        """Heartbeat ``run_id`` every ``every_s`` seconds from a background thread while the block runs.

        The thread has its own connection. If another worker takes the run over, ``handle.lost`` is set
        and the beats stop; the block is not interrupted (check ``handle.lost.is_set()`` between epochs).
        """
        worker = self._claims.get(run_id, self.worker)
        handle, stop = KeepAlive(), threading.Event()

        def beat() -> None:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None)
            try:
                while not stop.wait(every_s):
                    try:
                        cur = conn.execute(
                            "UPDATE runs SET heartbeat_at = ? "
                            "WHERE run_id = ? AND status = 'running' AND worker = ?",
                            (time.time(), run_id, worker),
                        )
                    except sqlite3.OperationalError:
                        continue  # busy for longer than busy_timeout: try again at the next beat
                    if cur.rowcount != 1:
                        handle.lost.set()
                        return
            finally:
                conn.close()

        thread = threading.Thread(target=beat, name=f"calikd-heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield handle
        finally:
            stop.set()
            thread.join()

    def fail(self, run_id: str, error: str) -> bool:
        """Record the run as failed with ``error`` (kept to its last 20,000 characters).

        Returns False, writing nothing, if this worker no longer holds the run (so that a handler in an
        ``except`` block never hides the original exception).
        """
        text = str(error)[-MAX_ERROR_CHARS:]
        now = time.time()
        with self._write() as conn:
            status, holder, worker, started = self._owned(conn, run_id)
            if status != "running" or holder != worker:
                return False
            conn.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = ?, heartbeat_at = ?, "
                "wall_time_s = ? WHERE run_id = ?",
                (text, now, now, None if started is None else now - started, run_id),
            )
        self._claims.pop(run_id, None)
        return True

    def release(self, run_id: str) -> bool:
        """Give a run this worker holds back as pending (an interrupted, not a failed run); True if so."""
        with self._write() as conn:
            status, holder, worker, _ = self._owned(conn, run_id)
            if status != "running" or holder != worker:
                return False
            conn.execute(
                "UPDATE runs SET status = 'pending', heartbeat_at = NULL WHERE run_id = ?",
                (run_id,),
            )
        self._claims.pop(run_id, None)
        return True
