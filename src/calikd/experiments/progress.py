"""A sweep's progress line: elapsed time and an ETA from the runs left, each kind of run at its own pace."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable


def clock_text(seconds: float) -> str:
    """``1:23`` or ``1:02:03``."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class SweepProgress:
    """Elapsed time and ETA of a sweep's runs.

    The ETA spreads the runs left over the ``slots`` (workers): each at the mean wall time of the runs of its
    kind that ended with one here (teachers take minutes, calibrations seconds), a kind none of which has
    ended yet at the mean of all that have; before any has, the elapsed time per run ended so far. Without
    ``slots`` (a Ray cluster's), the runs' wall times summed over the elapsed time say how many ran at once.
    """

    def __init__(
        self, kinds: Iterable[str], slots: int | None = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._left = Counter(kinds)
        self._slots = None if slots is None else max(1, slots)
        self._clock = clock
        self._start = clock()
        self._seconds: dict[str, list[float]] = {}
        self._ended = 0

    def ended(self, kind: str, seconds: float | None = None, *, again: bool = False) -> str:
        """Count one run of ``kind`` as ended (its wall time when it ran here; ``again``: a run counted
        before, skipped then run here) and return the line's `` (elapsed 1:23, ETA 4:56)``."""
        if not again:
            self._left[kind] -= 1
            self._ended += 1
        if seconds is not None and seconds >= 0:
            self._seconds.setdefault(kind, []).append(float(seconds))
        elapsed = self._clock() - self._start
        eta = f", ETA {clock_text(self.seconds_left(elapsed))}" if self._runs_left() else ""
        return f" (elapsed {clock_text(elapsed)}{eta})"

    def seconds_left(self, elapsed: float) -> float:
        """The estimated wall time of the runs left."""
        every = [s for values in self._seconds.values() for s in values]
        if not every:
            return elapsed / max(1, self._ended) * self._runs_left()
        overall = sum(every) / len(every)
        work = 0.0
        for kind, n in self._left.items():
            values = self._seconds.get(kind)
            work += max(0, n) * (sum(values) / len(values) if values else overall)
        slots = self._slots or max(1.0, sum(every) / elapsed if elapsed > 0 else 1.0)
        return work / slots

    def _runs_left(self) -> int:
        return sum(max(0, n) for n in self._left.values())
