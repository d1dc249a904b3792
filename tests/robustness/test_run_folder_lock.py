"""One writer per run folder: a second ``train-teacher``, ``distill``, ``calibrate``, ``corrupt`` or
``report`` into a folder that a live process holds is refused, naming that process; a lock left by a dead
process is taken over; the lock goes with the run, whatever way the run ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bad_input_helpers import DATA, EVAL, FAST, MODEL, RunCli, assert_refused, copy_run, train_tiny_teacher

from calikd.engine.run import prepare_run_dir
from calikd.errors import ConfigError
from calikd.teacher import TeacherConfig, train_teacher
from calikd.utils.process import PID_NAMESPACE_TAG
from calikd.utils.run_lock import LOCK_NAME, RunDirLock, run_dir_lock_scope

TRAIN = ["train-teacher", *DATA, *MODEL, *FAST]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_teacher(tmp_path_factory.mktemp("teacher") / "run")


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process of this machine that is alive for the test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _plant_lock(folder: Path, pid: int) -> Path:
    """A lock file as a calikd process ``pid`` of this machine writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(f"{socket.gethostname()}:{pid}/abc123{PID_NAMESPACE_TAG}\n")
    return lock


def _holder_message(pid: int) -> str:
    return f"is in use by another calikd process (pid {pid} on host {socket.gethostname()})"


def test_a_second_train_teacher_is_refused_naming_the_holder(
    run_cli: RunCli, tmp_path: Path, live_pid: int
) -> None:
    out = tmp_path / "run"
    _plant_lock(out, live_pid)
    assert_refused(run_cli, [*TRAIN, "--out", out], _holder_message(live_pid), "hint:", root=tmp_path)


def test_a_run_in_progress_holds_its_folder(run_cli: RunCli, tmp_path: Path) -> None:
    """While one run trains (here: at its first step) a second run into the same folder is refused."""
    out = tmp_path / "run"
    seen: list[tuple[int, str]] = []

    def second_writer(step: int) -> None:
        if step == 1:
            assert (out / LOCK_NAME).is_file()
            code, _, err = run_cli([*TRAIN, "--out", str(out), "--seed", "2"])
            seen.append((code, err))

    config = TeacherConfig(
        dataset="synthetic",
        dataset_options={"train_size": 160, "test_size": 64, "num_classes": 4},
        model="mlp",
        model_kwargs={"width": 8},
        epochs=1,
        batch_size=32,
        precision="fp32",
        device="cpu",
        progress=False,
        out=str(out),
    )
    train_teacher(config, on_step=second_writer, log=None)
    ((code, err),) = seen
    assert code == 2 and _holder_message(os.getpid()) in err
    assert not (out / LOCK_NAME).exists()  # released when the run ended
    assert (out / "last.json").is_file()


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "run"

    def boom(step: int) -> None:
        raise KeyboardInterrupt

    config = TeacherConfig(
        dataset="synthetic",
        dataset_options={"train_size": 160, "test_size": 64, "num_classes": 4},
        model="mlp",
        model_kwargs={"width": 8},
        epochs=1,
        batch_size=32,
        precision="fp32",
        device="cpu",
        progress=False,
        out=str(out),
    )
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, on_step=boom, log=None)
    assert not out.exists()  # nothing was written: the folder the lock created is gone too


def test_a_stale_lock_of_a_dead_process_is_taken_over(run_cli: RunCli, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid names no process any more
    out = tmp_path / "run"
    _plant_lock(out, proc.pid)
    code, _, err = run_cli([*TRAIN, "--out", str(out)])
    assert code == 0, err
    assert (out / "last.json").is_file() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("command", ["distill", "calibrate", "report", "corrupt"])
def test_every_writing_command_takes_the_lock(
    command: str, run_cli: RunCli, tmp_path: Path, teacher_run: Path, live_pid: int
) -> None:
    run = copy_run(teacher_run, tmp_path / "run")
    argv = {
        "distill": [
            "distill", "--teacher", run / "last", "--student", "mlp", "--student-kwargs", "width=8",
            "--method", "kd", "--teacher-calibration", "none", *FAST, "--out", tmp_path / "student",
        ],
        "calibrate": ["calibrate", run / "last", *EVAL, "--no-plots"],
        "report": ["report", run, "--out", tmp_path / "student"],
        "corrupt": [
            "corrupt", *DATA, "--corruptions", "gaussian_noise", "--out", tmp_path / "student",
        ],
    }[command]  # fmt: skip
    if command == "report":
        (run / "report.json").write_text("{}")
    _plant_lock(run if command == "calibrate" else tmp_path / "student", live_pid)
    assert_refused(run_cli, argv, _holder_message(live_pid), root=tmp_path)


def test_ddp_ranks_all_fail_when_rank_0_cannot_lock(tmp_path: Path) -> None:
    """Rank 0 alone takes the lock; another rank learns through the ranks' agreement that it failed and
    raises too, instead of waiting for rank 0 at a barrier."""

    class OtherRank:
        is_main, enabled = False, True

        def agree(self, value: int) -> bool:
            assert value == 1  # this rank took no lock, so it agrees; rank 0 says 0
            return False

        def barrier(self) -> None:
            raise AssertionError("would wait for a rank 0 that gave up")

    with pytest.raises(ConfigError, match="rank 0 could not lock"), run_dir_lock_scope():
        prepare_run_dir(tmp_path / "run", resume=False, overwrite=False, run_files=(), runtime=OtherRank())
    assert not (tmp_path / "run").exists()


def test_the_lock_file_is_never_seen_half_written(tmp_path: Path) -> None:
    with RunDirLock(tmp_path / "run") as lock:
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == lock.owner
        assert [p.name for p in (tmp_path / "run").iterdir()] == [LOCK_NAME]  # no temporary file left
        with pytest.raises(ConfigError, match="is in use by another calikd process"):
            RunDirLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run").exists()
