"""Time loops that live in different processes, in interleaved rounds (shared by the speed benchmarks).

A reference loop "written the usual way" must run with the default allocator and OpenMP settings, which
calikd changes process-wide at import (``calikd._startup``); so each side runs in its own worker process
(``CALIKD_TUNE_PROCESS=0`` for the reference) and the controller asks the workers for one timed pass of a
named loop at a time, round after round, so that a busy spell on a shared CPU hits every loop alike.

Worker protocol: the worker prints ``ready {json}`` (its process settings), then for each line ``NAME`` on
stdin runs that loop once and prints ``result {"images": n, "seconds": s, "sys_seconds": k}``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


def serve(loops: Mapping[str, Callable[[], int]], info: Mapping[str, object]) -> None:
    """Worker side: run the named loops on request (each returns the number of images it processed)."""
    print("ready " + json.dumps(dict(info)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        images = loops[name]()
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        result = {"images": images, "seconds": seconds, "sys_seconds": after.ru_stime - before.ru_stime}
        print("result " + json.dumps(result), flush=True)


@dataclass
class Worker:
    """A worker process serving ``loops``."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str | None]  # None removes the variable
    loops: Sequence[str]
    info: dict[str, object] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = json.loads(self._expect("ready"))

    def _expect(self, tag: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :]
            sys.stdout.write(f"  [{self.name}] {line}")  # the worker's own log lines
        raise RuntimeError(f"worker {self.name} exited (code {self.proc.wait()})")

    def run(self, loop: str) -> dict[str, float]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(loop + "\n")
        self.proc.stdin.flush()
        return json.loads(self._expect("result"))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def run_rounds(workers: Sequence[Worker], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Start the workers, then ``rounds`` rounds of one pass of every loop; returns each loop's passes."""
    for worker in workers:
        worker.start()
    results: dict[str, list[dict[str, float]]] = {loop: [] for w in workers for loop in w.loops}
    try:
        for _ in range(rounds):
            for worker in workers:
                for loop in worker.loops:
                    results[loop].append(worker.run(loop))
    finally:
        for worker in workers:
            worker.stop()
    return results


def best_rate(passes: Sequence[Mapping[str, float]]) -> tuple[float, float]:
    """The best pass's img/s and its system (kernel) seconds per 1,000 images."""
    best = max(passes, key=lambda p: p["images"] / p["seconds"])
    return best["images"] / best["seconds"], 1000 * best["sys_seconds"] / best["images"]
