"""Numbers checked at the boundary, standard JSON only, temperatures within the fitter's range, sweep names
that stay inside the sweep, a full disk named, and SIGTERM answered with a message."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from bad_input_helpers import DATA, FAST, MODEL, RunCli, assert_refused, snapshot, train_tiny_teacher
from robust_helpers import no_plots

import calikd
from calikd.calibration import TemperatureScaling, load_calibrator
from calikd.errors import CalikdError, CheckpointError, ConfigError

TRAIN = ["train-teacher", *DATA, *MODEL, *FAST]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_teacher(tmp_path_factory.mktemp("teacher") / "run")


def _strict_json(path: Path) -> Any:
    """Parse ``path`` as standard JSON: ``NaN`` and ``Infinity`` are refused."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--label-smoothing", "nan", "label_smoothing"),
        ("--warmup-epochs", "nan", "warmup_epochs"),
        ("--milestones", "nan", "milestones[0]"),
        ("--lr", "nan", "lr"),
        ("--lr", "inf", "lr"),
        ("--weight-decay", "nan", "weight_decay"),
        ("--grad-clip", "nan", "grad_clip"),
        ("--momentum=-inf", None, "momentum"),
    ],
)
def test_float_options_must_be_finite(
    run_cli: RunCli, tmp_path: Path, flag: str, value: str | None, key: str
) -> None:
    shown = value or flag.split("=")[1]
    assert_refused(
        run_cli,
        [*TRAIN, flag, *([value] if value else []), "--out", tmp_path / "run"],
        f"config key '{key}' must be a finite number; got {shown}",
        root=tmp_path,
    )


def test_floats_inside_option_mappings_must_be_finite(
    run_cli: RunCli, tmp_path: Path, teacher_run: Path
) -> None:
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump({"method_options": {"temperature": float("nan")}}))
    argv = ["distill", "--config", config, "--teacher", teacher_run / "last", "--student", "mlp", *FAST]
    assert_refused(
        run_cli, argv, "config key 'method_options.temperature' must be a finite number", root=tmp_path
    )


def test_run_files_are_standard_json(run_cli: RunCli, tmp_path: Path) -> None:
    """Without a val split the val ECE is undefined: it is written as null, never as NaN."""
    out = tmp_path / "run"
    code, _, err = run_cli([*TRAIN, "--val-fraction", "0", "--out", str(out)])
    assert code == 0, err
    for name in ("last.json", "best.json", "summary.json"):
        _strict_json(out / name)
    assert _strict_json(out / "last.json")["metrics"]["val_ece"] is None


# ------------------------------------------------------------------------------------------- temperature
def _calibrator_file(tmp_path: Path, **changes: Any) -> Path:
    torch.manual_seed(0)
    logits, labels = torch.randn(200, 4) * 3, torch.randint(0, 4, (200,))
    logits[torch.arange(100), labels[:100]] += 4  # right half the time
    path = tmp_path / "cal"
    TemperatureScaling().fit(logits, labels).save(path)
    doc = json.loads((tmp_path / "cal.json").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        doc[section][name] = value
    (tmp_path / "cal.json").write_text(json.dumps(doc))
    return tmp_path / "cal.json"


@pytest.mark.parametrize("temperature", [1e300, 1e-300, 25.0, 0.01])
def test_a_stored_temperature_outside_the_fit_range_is_refused(tmp_path: Path, temperature: float) -> None:
    path = _calibrator_file(tmp_path, params__temperature=temperature)
    with pytest.raises(CheckpointError, match=f"'{path}'.*outside the range its fit allows") as info:
        load_calibrator(path)
    assert "diverged" not in str(info.value)


def test_stored_temperature_bounds_are_limited(tmp_path: Path) -> None:
    path = _calibrator_file(tmp_path, hyperparams__t_max=1e300, params__temperature=1e300)
    with pytest.raises(CheckpointError, match=r"within \[0.0001, 10000\]"):
        load_calibrator(path)


def test_a_temperature_set_outside_the_range_is_refused_on_transform(tmp_path: Path) -> None:
    path = _calibrator_file(tmp_path)
    calibrator = load_calibrator(path)
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    assert calibrator.transform(logits).argmax().item() == 0
    calibrator.temperature = 1e300  # would underflow every logit to 0: a tie, and another argmax
    with pytest.raises(ConfigError, match=f"calibrator '{path}' has temperature 1e\\+300, outside"):
        calibrator.transform(logits)


# ------------------------------------------------------------------------------------------------ sweeps
def _sweep(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {
        "name": "s",
        "out": str(tmp_path / "sweep"),
        "dataset": "synthetic",
        "dataset_options": {"train_size": 160, "test_size": 64, "num_classes": 4},
        "teachers": [{"name": "t", "model": "mlp", "model_kwargs": {"width": 8}}],
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../x"}, "sweep name '../x' cannot name a folder"),
        ({"name": "a/b"}, "sweep name 'a/b' cannot name a folder"),
        ({"teachers": [{"name": "../../../../x", "model": "mlp"}]}, "teacher name '../../../../x'"),
        ({"teachers": [{"name": "a/b", "model": "mlp"}]}, "teacher name 'a/b'"),
        ({"students": [{"model": "mlp", "name": ".."}]}, "student name '..'"),
        ({"methods": [{"method": "kd", "name": "x/../../y"}]}, "method name 'x/../../y'"),
    ],
)
def test_names_must_be_one_path_component(
    run_cli: RunCli, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(_sweep(tmp_path, **changes)))
    assert_refused(run_cli, ["sweep", spec, "--db", tmp_path / "db.sqlite"], message, root=tmp_path)


def test_a_foreign_teacher_is_calibrated_inside_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's teacher from outside (``checkpoint: ../..``-style paths allowed) is calibrated into the
    sweep folder; its own folder is not written to, and the students use the sweep's calibrator."""
    from calikd.experiments.plan import expand
    from calikd.experiments.spec import parse_spec
    from calikd.experiments.tasks import run_calibrate, run_distill

    foreign = tmp_path / "elsewhere" / "run"
    foreign.parent.mkdir()
    os.rename(train_tiny_teacher(tmp_path / "t0"), foreign)
    before = snapshot(foreign)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = _sweep(tmp_path, teachers=[{"checkpoint": "../elsewhere/run"}])
    data.update(
        calibrations=["temperature"],
        students=[{"model": "mlp", "kwargs": {"width": 8}}],
        distill={"epochs": 1, "batch_size": 32, "device": "cpu", "precision": "fp32"},
    )
    plans = expand(parse_spec(data))
    (calibrate,) = [p for p in plans if p.kind == "calibrate"]
    sweep = (tmp_path / "sweep").resolve()
    assert Path(calibrate.out_dir).resolve().is_relative_to(sweep)
    with no_plots():
        _, artifacts = run_calibrate(calibrate)
    assert Path(artifacts["calibrator_temperature"]).resolve().is_relative_to(sweep)
    assert snapshot(foreign) == before
    (student,) = [p for p in plans if p.kind == "distill"]
    assert student.config["teacher_calibration"] == artifacts["calibrator_temperature"]
    assert Path(student.out_dir).resolve().is_relative_to(sweep)
    with no_plots():
        run_distill(student)
    report = _strict_json(Path(student.out_dir) / "report.json")
    assert report["teacher"]["calibration_source"].find("sweep") >= 0
    assert snapshot(foreign) == before


# ----------------------------------------------------------------------------------------------- failures
def test_a_full_disk_names_the_file_and_leaves_no_folder(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint writer hits ENOSPC (simulated: no disk is filled) on the first write."""
    from calikd.store import checkpoint
    from calikd.utils.io import atomic_write

    def full_disk(path: str | os.PathLike[str], data: bytes) -> None:
        with atomic_write(path) as fh:
            fh.write(data[:8])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full_disk)
    out = tmp_path / "runs" / "run"
    code, _, err = run_cli([*TRAIN, "--out", str(out)])
    assert code == 2 and "Traceback" not in err
    assert f"cannot write '{out}/" in err and "No space left on device" in err and "hint:" in err
    assert not (tmp_path / "runs").exists()


def test_sigterm_exits_with_a_message_and_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(calikd.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [str(a) for a in [*TRAIN, "--epochs", "500", "--out", out]]
    proc = subprocess.Popen(
        [sys.executable, "-m", "calikd", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.json").exists():  # training, with its first checkpoint written
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert b"terminated (SIGTERM)" in err and b"Traceback" not in err
    assert (out / "last.json").is_file() and not (out / ".calikd.lock").exists()


def test_errors_are_calikd_errors() -> None:
    """(a write error is both a CalikdError, for the CLI, and an OSError, for code that handles I/O)"""
    from calikd.errors import WriteError

    exc = WriteError("x", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(exc, CalikdError) and isinstance(exc, OSError) and exc.errno == errno.ENOSPC
