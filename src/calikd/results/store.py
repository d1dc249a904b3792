""":class:`ResultsStore`: the results database of one process, composed of its three parts.

* :class:`~calikd.results.leases.Leases`: the job queue (claims, heartbeats, worker liveness);
* :class:`~calikd.results.records.Records`: writing sweeps, runs and their results;
* :class:`~calikd.results.query.Queries`: reading them back, and the CSV export.
"""

from __future__ import annotations

import os
import secrets

from calikd.results.query import Queries
from calikd.results.records import Records
from calikd.utils.process import PID_NAMESPACE_TAG

__all__ = ["DEFAULT_DB_PATH", "ResultsStore"]

DEFAULT_DB_PATH = "runs/calikd.db"


class ResultsStore(Records, Queries):
    """The SQLite results database at ``path`` (see :mod:`calikd.results` for the schema and the protocol).

    Args:
        path: the database file; its folder and the schema are created on first use unless ``create``
            is False, in which case a missing file raises :class:`ResultsStoreError` (as the CLI wants).
        worker: who claims runs; default ``host:pid/token`` (:func:`default_worker` plus a random token
            of this store object, so that two stores in one process, e.g. one per thread, or two
            containers with the same host name and pid, never pass for one worker; in a container the
            token ends with ``@<PID namespace>``, see :func:`worker_is_gone`).
        busy_timeout_s: how long a write waits for other writers before giving up.

    Raises :class:`ResultsStoreError` (a :class:`calikd.errors.CalikdError`, naming the file) for a file
    that is not SQLite, is corrupt, is another program's database or has a newer schema version.
    One connection per store object and per process; not thread-safe (open one store per thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        worker: str | None = None,
        busy_timeout_s: float = 60.0,
    ) -> None:
        self._worker = worker
        self._token = secrets.token_hex(3) + PID_NAMESPACE_TAG
        self._claims = {}
        super().__init__(path, create=create, busy_timeout_s=busy_timeout_s)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"
