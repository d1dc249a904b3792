"""The sweep's ETA: the runs left, each kind at the pace of its own finished runs, over the workers."""

from __future__ import annotations

import pytest

from calikd.experiments.progress import SweepProgress, clock_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_kind_runs_at_its_own_pace_over_the_workers() -> None:
    clock = FakeClock()
    progress = SweepProgress(["teacher"] * 2 + ["calibrate"] * 2 + ["distill"] * 8, slots=2, clock=clock)
    clock.now = 100.0
    # one teacher ended (100 s): the kinds not seen yet are assumed as long, (1 + 2 + 8) x 100 s / 2 workers
    assert progress.ended("teacher", 100.0) == " (elapsed 1:40, ETA 9:10)"
    assert progress.seconds_left(100.0) == pytest.approx(550.0)
    clock.now = 130.0
    progress.ended("calibrate", 2.0)
    clock.now = 160.0
    progress.ended("distill", 10.0)
    # teacher 1 x 100 + calibrate 1 x 2 + distill 7 x 10, over 2 workers
    assert progress.seconds_left(160.0) == pytest.approx((100 + 2 + 70) / 2)
    progress.ended("teacher", 300.0)  # a kind's mean moves with every run of it
    assert progress.seconds_left(160.0) == pytest.approx((2 + 70) / 2)


def test_without_run_times_the_eta_is_the_elapsed_time_per_run_and_the_last_run_shows_none() -> None:
    clock = FakeClock()
    progress = SweepProgress(["distill"] * 3, clock=clock)
    clock.now = 60.0
    assert progress.ended("distill") == " (elapsed 1:00, ETA 2:00)"  # blocked or skipped: no run time
    progress.ended("distill")
    clock.now = 3725.0
    assert progress.ended("distill", 5.0) == " (elapsed 1:02:05)"


def test_clock_text() -> None:
    assert [clock_text(s) for s in (0, 59.4, 61, 3600, 3661.6)] == [
        "0:00",
        "0:59",
        "1:01",
        "1:00:00",
        "1:01:02",
    ]


def test_without_slots_the_runs_in_parallel_are_read_from_their_times() -> None:
    clock = FakeClock()
    progress = SweepProgress(["distill"] * 12, slots=None, clock=clock)  # a Ray cluster: parallelism unknown
    clock.now = 10.0
    for _ in range(4):  # four 10-second runs ended in 10 s: four at once
        progress.ended("distill", 10.0)
    assert progress.seconds_left(10.0) == pytest.approx(8 * 10.0 / 4)
    assert SweepProgress(["distill"], slots=None, clock=clock).seconds_left(0.0) == 0.0
