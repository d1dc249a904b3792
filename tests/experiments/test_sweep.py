"""Sweeps end to end on tiny synthetic data: expansion, the results store, restart, failures, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from calikd.cli import main
from calikd.errors import ConfigError
from calikd.experiments import expand, load_spec, parse_spec, run_sweep
from calikd.experiments.spec import recorded_file, spec_to_dict
from calikd.results import ResultsStore

DATA = {"train_size": 160, "test_size": 64, "num_classes": 3, "seed": 2}
FAST = {"batch_size": 32, "precision": "fp32", "device": "cpu", "lr": 0.05}


def sweep_dict(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "tiny",
        "out": str(tmp_path / "sweep"),
        "dataset": "synthetic",
        "dataset_options": DATA,
        "teachers": [{"name": "t8", "model": "resnet8", "epochs": 1}],
        "teacher_defaults": FAST,
        "calibrations": ["none", "temperature"],
        "methods": ["ce", "kd"],
        "students": [{"model": "cnn", "kwargs": {"width": 4}}],
        "seeds": [0],
        "distill": {"epochs": 1, **FAST},
    }
    spec.update(overrides)
    return spec


def test_expansion_dedupes_the_baseline_and_orders_phases(tmp_path: Path) -> None:
    plans = expand(parse_spec(sweep_dict(tmp_path, seeds=[0, 1], taus=[None, 2.0])))
    kinds = [p.kind for p in plans]
    assert kinds == sorted(kinds, key=["teacher", "calibrate", "distill"].index)
    distill = [p for p in plans if p.kind == "distill"]
    baseline = [p for p in distill if p.config["method"] == "ce"]
    assert len(baseline) == 2  # one per seed: teachers, calibrations and taus do not apply
    assert len(distill) == 2 + 2 * 2 * 2  # kd: calibrations x taus x seeds
    assert len({p.run_id for p in plans}) == len(plans)
    assert all(p.depends_on for p in distill if p.config["method"] == "kd")


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"teachers": [{"name": "t", "model": "resnet8", "epoch": 1}]}, "did you mean 'epochs'"),
        ({"methods": [{"method": "kd", "options": {"temprature": 2}}]}, "did you mean 'tau'"),
        ({"distill": {"seed": 3}}, "the sweep sets these itself"),
        ({"seedz": [1]}, "did you mean 'seeds'"),
        ({"seeds": [0, -1]}, r"the sweep's 'seeds' must be non-negative integers, got \[-1\]"),
        ({"seeds": ["one"]}, r"'seeds' must be non-negative integers, got \['one'\]"),
        ({"teachers": []}, "needs at least one entry under 'teachers'"),
        ({"dataset": None, "teachers": [{"checkpoint": "x/last"}]}, "'ce' .* needs the sweep's 'dataset'"),
        ({"pairs": [{"teacher": "t9", "student": "cnn"}]}, "pairs: no teacher named 't9'.*did you mean 't8'"),
        ({"pairs": [{"teacher": "t8", "student": "cnm"}]}, "pairs: no student 'cnm'.*did you mean 'cnn'"),
        ({"pairs": [{"teacher": "t8", "studnet": "cnn"}]}, "did you mean 'student'"),
        ({"pairs": ["t8"]}, "each entry of 'pairs' must be a mapping"),
        ({"teacher_floors": [0.9]}, "'teacher_floors' must map model-name patterns to accuracies"),
        ({"teacher_floors": {"*": 91}}, r"teacher floor for '\*' must be an accuracy in \[0, 1\], got 91"),
        ({"teacher_floor": {"*": 0.9}}, "did you mean 'teacher_floors'"),
    ],
)
def test_bad_sweep_files_are_refused_before_running(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expand(parse_spec(sweep_dict(tmp_path, **overrides)))


def test_pairs_restrict_the_teacher_student_grid(tmp_path: Path) -> None:
    teachers = [
        {"name": "t8", "model": "resnet8", "epochs": 1},
        {"name": "t14", "model": "resnet14", "epochs": 1},
    ]
    students = [{"model": "cnn", "kwargs": {"width": 4}}, {"name": "tiny", "model": "mlp", "kwargs": {}}]
    full = expand(
        parse_spec(sweep_dict(tmp_path, teachers=teachers, students=students, calibrations=["none"]))
    )
    pairs = [{"teacher": "t8", "student": "cnn"}, {"teacher": "t14", "student": "tiny"}]
    spec = parse_spec(
        sweep_dict(tmp_path, teachers=teachers, students=students, calibrations=["none"], pairs=pairs)
    )
    paired = expand(spec)
    kd = {
        (p.config["teacher"].split("/")[-2].split("-")[0], p.config["student"])
        for p in paired
        if p.config.get("method") == "kd"
    }
    assert kd == {("t8", "cnn"), ("t14", "mlp")}
    assert sum(p.config.get("method") == "kd" for p in full) == 4  # without pairs: every teacher x student
    assert sum(p.config.get("method") == "ce" for p in paired) == 2  # the students alone, once each


@pytest.mark.parametrize("order", [1, -1])
def test_teacher_floors_the_most_specific_pattern_wins_in_any_order(order: int) -> None:
    from calikd.experiments.spec import floor_for, parse_floors

    floors = parse_floors(dict(list({"big": 0.95, "mlp*": 0.88, "mlp_l*": 0.86, "*": 0.91}.items())[::order]))
    assert floor_for("big", "mlp", floors) == 0.95  # its exact name
    assert floor_for("t1", "mlp_small", floors) == 0.88
    assert floor_for("t1", "mlp_large", floors) == 0.86
    assert floor_for("t2", "resnet20", floors) == 0.91
    assert floor_for("t3", None, {"mlp*": 0.88}) is None
    assert parse_floors(None) == {}


def test_sweep_runs_records_and_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(sweep_dict(tmp_path))
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, log=lines.append)
    assert outcome.ok and outcome.counts["finished"] == 1 + 1 + 3
    progress = [line for line in lines if line.startswith("  [")]
    assert [line.split("]")[0].strip() for line in progress] == [f"[{i}/5" for i in range(1, 6)]
    assert "ETA" in progress[2] and "ETA" not in progress[4] and "elapsed" in progress[4]
    assert [line.split()[1] for line in progress] == ["teacher", "calibrate", "distill", "distill", "distill"]
    with ResultsStore(db) as store:
        runs = store.list_runs(sweep="tiny")
        assert {r.status for r in runs} == {"finished"}
        calibrate = next(r for r in runs if r.kind == "calibrate")
        assert calibrate.metrics["temperature"] > 0 and "val_raw_ace" in calibrate.metrics
        students = [r for r in runs if r.kind == "distill" and r.config["method"] == "kd"]
        assert all("teacher" in r.hashes for r in students)
        assert {r.config["teacher_calibration"] for r in students} == {"none", "temperature"}
        assert all(0 <= r.metrics["student_test_accuracy"] <= 1 for r in students)
    again = run_sweep(spec, db_path=db, log=None)
    assert again.counts["finished"] == 0 and again.counts["done before"] == 5
    with ResultsStore(db) as store:  # the store keeps the sweep file: the same runs can be planned again
        stored = next(s for s in store.sweeps() if s.name == "tiny").spec
    replanned = expand(parse_spec(recorded_file(stored, "tiny")))
    assert [p.run_id for p in replanned] == [p.run_id for p in expand(spec)]


def test_runs_spec_gives_back_the_sweep_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "calikd.db")
    data = sweep_dict(tmp_path, seeds=[0, 1])
    del data["name"]  # named after its file
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    with ResultsStore(db) as store:
        store.add_sweep(spec.name, spec_to_dict(spec))
        store.add_sweep("old", {"name": "old"})  # recorded before sweeps kept their file
    assert main(["runs", "spec", "grid", "--db", db]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"name": "grid", **data}
    out = tmp_path / "again.yaml"
    assert main(["runs", "spec", "grid", "--db", db, "--out", str(out)]) == 0
    assert f"to {out}" in capsys.readouterr().out
    assert [p.run_id for p in expand(load_spec(out))] == [p.run_id for p in expand(spec)]
    assert main(["runs", "spec", "gird", "--db", db]) == 2
    assert "no sweep 'gird'" in (err := capsys.readouterr().err) and "did you mean 'grid'" in err
    assert main(["runs", "spec", "old", "--db", db]) == 2
    assert "holds no sweep file for 'old'" in capsys.readouterr().err


def test_a_changed_spec_leaves_the_runs_it_no_longer_plans_out_of_the_sweep(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    first = parse_spec(sweep_dict(tmp_path, methods=["kd"], calibrations=["none"], seeds=[0, 1]))
    assert run_sweep(first, db_path=db, log=None).ok
    lines: list[str] = []
    second = parse_spec(sweep_dict(tmp_path, methods=["kd"], calibrations=["none"], seeds=[1]))
    outcome = run_sweep(second, db_path=db, log=lines.append)
    assert outcome.ok and outcome.counts["finished"] == 0 and outcome.counts["done before"] == 3
    assert any("1 runs of an earlier spec are no longer part of it" in line for line in lines)
    planned = {p.run_id for p in expand(second)}
    with ResultsStore(db) as store:
        assert {r.run_id for r in store.list_runs(sweep="tiny")} == planned
        assert len(store.list_runs(kind="distill")) == 2  # kept in the store
    assert run_sweep(first, db_path=db, log=None).counts["done before"] == 4  # and found again


def test_a_failing_run_is_recorded_and_the_rest_go_on(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    spec = parse_spec(
        sweep_dict(
            tmp_path,
            teachers=[{"name": "gone", "checkpoint": str(tmp_path / "missing" / "last")}],
            methods=["ce", "kd"],
        )
    )
    outcome = run_sweep(spec, db_path=db, log=None)
    assert not outcome.ok
    assert outcome.counts["finished"] == 1  # the baseline needs no teacher
    assert outcome.counts["failed"] == 2  # the calibration, and the student distilled from raw logits
    assert outcome.counts["blocked"] == 1  # the student of the calibrated teacher waited for it
    with ResultsStore(db) as store:
        failed = store.list_runs(sweep="tiny", status="failed")
        assert len(failed) == 2 and all("missing" in r.error for r in failed)


def test_sweep_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path, methods=["kd"], calibrations=["temperature"])))
    assert load_spec(path).name == "tiny"
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "distill" in capsys.readouterr().out
    db = str(tmp_path / "runs.db")
    assert main(["sweep", str(path), "--db", db]) == 0
    assert "done: 3 finished" in capsys.readouterr().out
    assert main(["runs", "list", "--db", db, "--sweep", "tiny"]) == 0
    assert "finished" in capsys.readouterr().out


def test_two_sweep_processes_share_the_work(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path, seeds=[0, 1], calibrations=["none"])))
    db = str(tmp_path / "shared.db")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "calikd", "sweep", str(path), "--db", db]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with ResultsStore(db) as store:
        runs = store.list_runs(sweep="tiny")
        assert len(runs) == 1 + 1 + 2 + 2  # teacher, calibrate, 2 baselines, 2 KD students
        assert all(r.status == "finished" and r.attempts == 1 for r in runs)


def test_robustness_corrupts_once_and_evaluates_every_teacher_and_student(tmp_path: Path) -> None:
    from calikd.experiments.report import sweep_report

    robustness = {"corruptions": ["contrast", "gaussian_noise"], "test_subset": 30, "seed": 1}
    spec = parse_spec(sweep_dict(tmp_path, robustness=robustness))
    plans = expand(spec)
    assert [p.kind for p in plans].count("corrupt") == 1
    robust = [p for p in plans if p.kind == "robustness"]
    assert len(robust) == 1 + 3  # the teacher, the student alone and two KD students
    corrupt = next(p for p in plans if p.kind == "corrupt")
    assert all(corrupt.run_id in p.depends_on for p in robust)
    db = str(tmp_path / "calikd.db")
    outcome = run_sweep(spec, db_path=db, log=None)
    assert outcome.ok and outcome.counts["finished"] == 1 + 1 + 3 + 1 + 4
    with ResultsStore(db) as store:
        runs = {r.run_id: r for r in store.list_runs(sweep="tiny")}
    labels = np.load(Path(corrupt.out_dir) / "labels.npy")
    assert labels.shape == (5 * 30,)
    for plan in robust:
        m = runs[plan.run_id].metrics
        assert 0 <= m["corrupt_accuracy"] <= 1 and m["corrupt_error"] == pytest.approx(
            1 - m["corrupt_accuracy"]
        )
        assert {f"corrupt_s{s}_ece" for s in range(1, 6)} <= set(m)
    md, _ = sweep_report(db, "tiny", tmp_path / "report")
    text = md.read_text()
    assert "## Under corruption" in text and "teacher t8" in text and "stratified subset of 30" in text


@pytest.mark.parametrize(
    "robustness,message",
    [
        ({"corruptions": "fogg"}, "did you mean 'fog'"),
        ({"test_subset": 0}, "test_subset must be a positive integer"),
        ({"seeds": 1}, "did you mean 'seed'"),
        ("yes", "must be a mapping"),
    ],
)
def test_bad_robustness_options_are_refused(tmp_path: Path, robustness: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(sweep_dict(tmp_path, robustness=robustness))


def test_a_teacher_trained_by_another_sweep_is_reused_not_retrained(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    first = parse_spec(sweep_dict(tmp_path, methods=["kd"], calibrations=["none"]))
    assert run_sweep(first, db_path=db, log=None).ok
    lines: list[str] = []
    second = parse_spec(
        sweep_dict(tmp_path, name="other", out=str(tmp_path / "other"), methods=["kd"], calibrations=["none"])
    )
    outcome = run_sweep(second, db_path=db, log=lines.append)
    assert outcome.ok, outcome.failed
    assert outcome.counts["done before"] == 1 and outcome.counts["finished"] == 2  # calibrate + student
    teacher = next(p for p in expand(second) if p.kind == "teacher")
    assert (Path(teacher.out_dir) / "last.safetensors").exists()
    assert (Path(teacher.out_dir) / ".adopted-from").read_text().strip().endswith(Path(teacher.out_dir).name)
    assert any("reused from" in line for line in lines)


def test_students_may_train_on_a_subset_of_the_teachers_split(tmp_path: Path) -> None:
    spec = parse_spec(sweep_dict(tmp_path, student_train_subset=60))
    plans = expand(spec)
    teacher = next(p for p in plans if p.kind == "teacher")
    assert "train_subset" not in teacher.config["dataset_options"]
    students = [p for p in plans if p.kind == "distill"]
    assert students and all(p.config["dataset_options"]["train_subset"] == 60 for p in students)
    assert all(p.config["dataset_options"]["train_size"] == DATA["train_size"] for p in students)
    with pytest.raises(ConfigError, match="student_train_subset must be a positive integer"):
        parse_spec(sweep_dict(tmp_path, student_train_subset=0))
    with pytest.raises(ConfigError, match="exceeds the teachers' train_subset 50"):
        parse_spec(
            sweep_dict(tmp_path, dataset_options={**DATA, "train_subset": 50}, student_train_subset=60)
        )
    outcome = run_sweep(spec, db_path=str(tmp_path / "calikd.db"), log=None)
    assert outcome.ok  # the students of a subset accept the teacher trained on the whole split
    with ResultsStore(str(tmp_path / "calikd.db")) as store:
        kd = [r for r in store.list_runs(sweep="tiny") if r.kind == "distill" and r.config["method"] == "kd"]
    meta = json.loads((Path(kd[0].out_dir) / "last.json").read_text())
    assert meta["dataset"]["options"]["train_subset"] == 60
