"""A sweep that spends its time training: the training share it prints and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calikd.experiments import parse_spec, run_sweep
from calikd.experiments.overhead import (
    SweepTiming,
    append_timing,
    evaluation_seconds,
    read_timings,
    total,
    train_loop_seconds,
)
from calikd.experiments.report import sweep_report
from calikd.results import ResultsStore, RunRecord

DATA = {"train_size": 160, "test_size": 64, "num_classes": 3, "seed": 2}
FAST = {"batch_size": 32, "precision": "fp32", "device": "cpu", "teacher_path": "eager"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, object, list[str]]:
    """One teacher, calibrated, and four students of it (raw and calibrated, two taus) with seeded cutmix."""
    root = tmp_path_factory.mktemp("study")
    spec = parse_spec(
        {
            "name": "study",
            "out": str(root / "out"),
            "dataset": "synthetic",
            "dataset_options": DATA,
            "teachers": [{"name": "t", "model": "cnn", "model_kwargs": {"width": 4}}],
            "teacher_defaults": {"epochs": 1, "lr": 0.05, "batch_size": 32, "precision": "fp32"},
            "calibrations": ["none", "temperature"],
            "methods": ["kd"],
            "students": [{"model": "cnn", "kwargs": {"width": 4}}],
            "kd_augments": ["cutmix"],
            "taus": [None, 2.0],
            "seeds": [0],
            "distill": {"epochs": 2, "lr": 0.05, **FAST},
        }
    )
    db = str(root / "calikd.db")
    lines: list[str] = []
    outcome = run_sweep(spec, db_path=db, log=lines.append)
    assert outcome.ok
    return db, root, outcome, lines


def test_timing_ratio_and_line() -> None:
    timing = SweepTiming(wall_s=20.0, train_loop_s=15.0, runs=3, slots=1)
    assert timing.ratio == pytest.approx(0.75)
    assert timing.line() == "training loops 15.0 s of 20.0 s wall (3 runs): 75% training, 25% overhead"
    two = SweepTiming(wall_s=10.0, train_loop_s=15.0, runs=4, slots=2)
    assert two.ratio == pytest.approx(0.75) and "x 2 workers" in two.line()
    assert SweepTiming(wall_s=1.0, train_loop_s=0.0, runs=0).ratio is None
    both = total([timing, two, SweepTiming(5.0, 0.0, 0)])  # a process that ran nothing does not count
    assert (both.wall_s, both.train_loop_s, both.runs) == (40.0, 30.0, 7)


def test_evaluation_runs_are_their_own_share_not_overhead() -> None:
    timing = SweepTiming(wall_s=20.0, train_loop_s=12.0, runs=5, slots=1, evaluation_s=6.0)
    assert (timing.ratio, timing.evaluation_ratio) == (pytest.approx(0.6), pytest.approx(0.3))
    assert timing.overhead == pytest.approx(0.1)
    assert timing.line() == (
        "training loops 12.0 s and evaluation runs 6.0 s of 20.0 s wall (5 runs): 60% training, "
        "30% evaluation runs, 10% overhead"
    )
    assert SweepTiming(wall_s=20.0, train_loop_s=12.0, runs=1).overhead == pytest.approx(0.4)
    both = total([timing, SweepTiming(10.0, 5.0, 2, 2, evaluation_s=4.0)])
    assert (both.wall_s, both.evaluation_s, both.overhead) == (40.0, 10.0, pytest.approx(0.325))
    assert SweepTiming(wall_s=1.0, train_loop_s=0.0, runs=0).overhead is None


def test_overhead_splits_into_time_inside_the_runs_and_workers_idle() -> None:
    # 2 workers for 10 s: runs held 16 of the 20 slot-seconds, 12 of them in training loops
    timing = SweepTiming(wall_s=10.0, train_loop_s=12.0, runs=3, slots=2, run_s=16.0)
    assert (timing.overhead, timing.idle, timing.inside_runs) == (
        pytest.approx(0.4),
        pytest.approx(0.2),
        pytest.approx(0.2),
    )
    assert timing.line().endswith("60% training, 40% overhead (20% inside the runs, 20% workers idle)")
    assert SweepTiming(wall_s=10.0, train_loop_s=12.0, runs=3, slots=2).idle is None  # not recorded
    both = total([timing, SweepTiming(wall_s=5.0, train_loop_s=4.0, runs=1, run_s=5.0)])
    assert (both.wall_s, both.run_s, both.idle) == (25.0, 21.0, pytest.approx(4 / 25))
    old = total([timing, SweepTiming(wall_s=5.0, train_loop_s=4.0, runs=1)])  # an entry without run_s
    assert old.idle is None and "workers idle" not in old.line()


def test_evaluation_seconds_count_calibrations_corrupted_sets_and_robustness_only() -> None:
    def run(kind: str, wall: float) -> RunRecord:
        return RunRecord(
            run_id=kind, sweep="s", kind=kind, name=kind, status="finished", config={}, hashes={},
            out_dir=None, created_at=0.0, started_at=None, finished_at=None, heartbeat_at=None,
            worker=None, attempts=1, error=None, wall_time_s=wall,
            metrics={"train_loop_seconds": wall / 2} if kind in ("teacher", "distill") else {},
        )  # fmt: skip

    kinds = {"teacher": 10.0, "calibrate": 1.0, "distill": 4.0, "corrupt": 2.0, "robustness": 3.0}
    runs = [run(kind, wall) for kind, wall in kinds.items()]
    assert evaluation_seconds(runs) == pytest.approx(6.0)
    assert train_loop_seconds(runs) == pytest.approx(7.0)


def test_timings_append_and_survive_a_bad_file(tmp_path: Path) -> None:
    assert read_timings(tmp_path) == []
    append_timing(tmp_path, SweepTiming(2.0, 1.0, 1))
    append_timing(tmp_path, SweepTiming(4.0, 3.0, 2, 2))
    assert read_timings(tmp_path) == [SweepTiming(2.0, 1.0, 1), SweepTiming(4.0, 3.0, 2, 2)]
    (tmp_path / "timing.json").write_text("{not json")
    assert read_timings(tmp_path) == []


def test_sweep_prints_and_records_its_training_share(sweep: tuple) -> None:
    db, root, outcome, lines = sweep
    with ResultsStore(db) as store:
        runs = store.list_runs(sweep="study")
    loops = {r.kind: [] for r in runs}
    for r in runs:
        loops[r.kind].append(r.metrics.get("train_loop_seconds"))
        if r.kind in ("teacher", "distill"):  # the epoch loops are part of the run
            assert 0 < r.metrics["train_loop_seconds"] < r.wall_time_s
    assert loops["calibrate"] == [None]
    expected = sum(v for kind in ("teacher", "distill") for v in loops[kind])
    timing = outcome.timing
    assert timing.runs == 6 and timing.slots == 1
    assert timing.train_loop_s == pytest.approx(expected)
    assert timing.ratio == pytest.approx(expected / timing.wall_s) and 0 < timing.ratio < 1
    assert timing.evaluation_s == pytest.approx(sum(r.wall_time_s for r in runs if r.kind == "calibrate"))
    assert lines[-1] == f"sweep 'study': {timing.line()}" and "evaluation runs" in lines[-1]
    assert read_timings(root / "out") == [timing]
    md, _ = sweep_report(db, "study", root / "report")
    assert f"Training loops took {timing.ratio:.0%} of the sweep's wall time" in md.read_text()
    assert json.loads((root / "out" / "timing.json").read_text())[0]["runs"] == 6


def test_students_of_one_teacher_share_its_logits_on_disk(sweep: tuple) -> None:
    db, root, _, _ = sweep
    with ResultsStore(db) as store:
        students = [r for r in store.list_runs(sweep="study") if r.kind == "distill"]
    assert [r.config["teacher_calibration"] for r in students] == ["none"] * 2 + ["temperature"] * 2
    steps = 2 * ((160 - 16) // 32)  # 2 epochs of the 144 training images (val holds 10%) in batches of 32
    first, *others = (r.metrics for r in students)
    assert (first["teacher_cache_hits"], first["teacher_cache_misses"]) == (0, steps)
    for later in others:  # raw and calibrated students alike read the first one's raw logits
        assert (later["teacher_cache_hits"], later["teacher_cache_misses"]) == (steps, 0)
    reports = [json.loads(Path(r.out_dir, "report.json").read_text()) for r in students]
    folders = {rep["cache"]["folder"] for rep in reports}
    assert len(folders) == 1 and Path(next(iter(folders))).parent == root / "out" / "cache"


def test_sweep_cache_defaults_leave_run_ids_alone_and_yield_to_the_sweep_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calikd.experiments import tasks
    from calikd.experiments.plan import expand
    from calikd.experiments.tasks import run_distill
    from calikd.results import run_id_for

    base = {
        "name": "ids",
        "out": str(tmp_path / "out"),
        "teachers": [{"checkpoint": "t/last"}],
        "methods": ["kd"],
        "distill": {"epochs": 1},
    }
    (plan,) = [p for p in expand(parse_spec(base)) if p.kind == "distill"]
    assert "teacher_cache" not in plan.config
    assert plan.run_id == run_id_for({"kind": "distill", **plan.config})
    assert plan.settings == {
        "teacher_cache": "disk",
        "cache_dir": str(tmp_path / "out" / "cache"),
        "teacher_numbers": str(tmp_path / "out" / "teacher-numbers" / "t.json"),
    }
    own = expand(parse_spec({**base, "distill": {"epochs": 1, "teacher_cache": "off"}}))[-1]
    seen = []

    def fake_distill(config: object, log: object = None) -> None:
        seen.append(config)
        raise RuntimeError("stop")

    monkeypatch.setattr(tasks, "distill", fake_distill)
    for p in (plan, own):
        with pytest.raises(RuntimeError, match="stop"):
            run_distill(p)
    assert [(c.teacher_cache, c.cache_dir) for c in seen] == [
        ("disk", str(tmp_path / "out" / "cache")),
        ("off", str(tmp_path / "out" / "cache")),
    ]


def test_sweeps_draw_reliability_diagrams_for_their_first_seed_only(tmp_path: Path) -> None:
    from calikd.experiments.plan import expand
    from calikd.results import run_id_for

    spec = {
        "name": "plots",
        "out": str(tmp_path / "out"),
        "dataset": "synthetic",
        "teachers": [{"checkpoint": "t/last"}],
        "methods": ["ce", "kd"],
        "seeds": [3, 1],
        "distill": {"epochs": 1},
    }
    students = [p for p in expand(parse_spec(spec)) if p.kind == "distill"]
    drawn = {
        (p.config["method"], p.config["seed"]): p.settings.get("reliability_plot", True) for p in students
    }
    assert drawn == {("ce", 3): True, ("kd", 3): True, ("ce", 1): False, ("kd", 1): False}
    assert all(p.run_id == run_id_for({"kind": "distill", **p.config}) for p in students)
    forced = {**spec, "distill": {"epochs": 1, "reliability_plot": True}}  # the sweep file's choice wins
    assert all(p.config["reliability_plot"] for p in expand(parse_spec(forced)) if p.kind == "distill")


def test_teacher_numbers_are_computed_once_per_teacher_and_calibration(sweep: tuple) -> None:
    db, root, _, _ = sweep
    with ResultsStore(db) as store:
        students = [r for r in store.list_runs(sweep="study") if r.kind == "distill"]
    reports = [json.loads(Path(r.out_dir, "report.json").read_text()) for r in students]
    path = str(root / "out" / "teacher-numbers" / "t.json")
    assert [rep["extra"]["teacher_numbers"] for rep in reports] == ["computed", path, "computed", path]
    keys = [(e["key"]["kind"], e["key"]["calibrator"] is None) for e in json.loads(Path(path).read_text())]
    assert keys == [("raw", True), ("calibrated", False)]
    raw = [rep["teacher"]["metrics"]["full"]["test"]["raw"] for rep in reports]
    assert all(r == raw[0] for r in raw)
    cal = [rep["teacher"]["metrics"]["full"]["test"]["calibrated"] for rep in reports[2:]]
    assert cal[0] == cal[1] and cal[0]["nll"] != raw[0]["nll"]


def test_read_teacher_numbers_equal_a_plain_distill_run(sweep: tuple, tmp_path: Path) -> None:
    from calikd.distill import DistillConfig, distill

    db, _, _, _ = sweep
    with ResultsStore(db) as store:
        reused = [r for r in store.list_runs(sweep="study") if r.kind == "distill"][-1]
    config = DistillConfig(**{**reused.config, "out": str(tmp_path / "plain"), "progress": False})
    assert config.teacher_numbers is None  # a plain `calikd distill` computes them
    plain = distill(config, log=None)
    read = json.loads(Path(reused.out_dir, "report.json").read_text())
    assert read["extra"]["teacher_numbers"] != "computed" and "teacher_numbers" not in plain.extra
    assert plain.teacher["metrics"] == read["teacher"]["metrics"]
    assert plain.student_test_last == read["student_test_last"]


def test_stale_teacher_numbers_are_never_used(sweep: tuple, tmp_path: Path) -> None:
    import torch

    from calikd.data import load_dataset
    from calikd.distill.inputs import DistillInputs
    from calikd.distill.teacher import load_teacher
    from calikd.distill.teacher_numbers import teacher_reports
    from calikd.utils.device import resolve_precision

    _, root, _, _ = sweep
    (ckpt,) = (root / "out" / "teachers").glob("t-*/last.safetensors")
    teacher = load_teacher(str(ckpt.with_suffix("")), "temperature", device=torch.device("cpu"))
    data = load_dataset("synthetic", **DATA)
    inputs = DistillInputs(data.info)
    views = {"full": (inputs.normalizer, {"normalization": inputs.describe()["normalization"]})}
    kwargs = {"device": torch.device("cpu"), "precision": resolve_precision("fp32", torch.device("cpu"))}
    path = tmp_path / "numbers.json"
    fresh, reused = teacher_reports(teacher, data, views, batch_size=64, path=path, **kwargs)
    assert not reused and path.exists()
    entries = json.loads(path.read_text())
    for entry in entries:  # mark the stored numbers, so that reading them shows
        entry["reports"]["test"]["accuracy"] = 0.125
    path.write_text(json.dumps(entries))
    again, reused = teacher_reports(teacher, data, views, batch_size=64, path=path, **kwargs)
    assert reused and again["full"]["test"]["calibrated"].accuracy == 0.125
    entries[1]["key"]["calibrator"]["params"] = {"temperature": 9.0}  # another calibrator: stale
    path.write_text(json.dumps(entries))
    computed, reused = teacher_reports(teacher, data, views, batch_size=64, path=path, **kwargs)
    assert not reused
    assert computed["full"]["test"]["calibrated"].accuracy == fresh["full"]["test"]["calibrated"].accuracy
    assert computed["full"]["test"]["raw"].accuracy == fresh["full"]["test"]["raw"].accuracy
    assert len(json.loads(path.read_text())) == 3  # the new calibrated entry; the raw one still matches


def test_every_run_of_a_sweep_measures_speed_into_the_sweeps_pinned_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calikd.engine import probe_cache
    from calikd.experiments import tasks
    from calikd.experiments.plan import expand

    spec = {
        "name": "pins",
        "out": str(tmp_path / "out"),
        "dataset": "synthetic",
        "teachers": [{"name": "t", "model": "cnn"}],
        "calibrations": ["none", "temperature"],
        "methods": ["ce", "kd"],
        "distill": {"epochs": 1},
    }
    plans = expand(parse_spec(spec))
    assert {p.kind for p in plans} == {"teacher", "calibrate", "distill"}
    assert {p.probes for p in plans} == {str(tmp_path / "out" / "speed-probes.json")}
    seen = []
    monkeypatch.setitem(
        tasks.RUNNERS, "distill", lambda plan: (seen.append(list(probe_cache._PINNED)), ({}, {}))[1]
    )
    tasks.run_work(next(p for p in plans if p.kind == "distill"))
    assert seen == [[tmp_path / "out" / "speed-probes.json"]] and probe_cache._PINNED == []
