"""``rank_teachers`` / ``calikd rank-teachers``: ranking by val calibration, checked against students."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import calikd.cli as cli_module
from calikd.cli import main, rank_teachers_cmd
from calikd.engine.evaluate import checkpoint_logits
from calikd.errors import CheckpointError, ConfigError
from calikd.experiments.ranking import (
    SAME_SPLIT_CAVEAT,
    RankedTeacher,
    TeacherRanking,
    _display_names,
    check_against_students,
    rank_teachers,
)
from calikd.metrics import adaptive_calibration_error
from calikd.results import ResultsStore, run_id_for
from calikd.store.checkpoint import checkpoint_id
from calikd.teacher import TeacherConfig, train_teacher

DATA = {"train_size": 160, "test_size": 64, "num_classes": 3}
VAL_FRACTION = 0.25  # 40 val samples
# (epochs, lr, label smoothing): differently calibrated teachers
RECIPES = [(2, 0.05, 0.0), (1, 0.05, 0.3), (2, 0.2, 0.0)]


def _train(out: Path, epochs: int, lr: float, smoothing: float, seed: int, **data: Any) -> str:
    config = TeacherConfig(
        dataset="synthetic",
        dataset_options={**DATA, **data},
        model="cnn",
        model_kwargs={"width": 4},
        epochs=epochs,
        lr=lr,
        label_smoothing=smoothing,
        batch_size=32,
        val_fraction=VAL_FRACTION,
        precision="fp32",
        device="cpu",
        progress=False,
        seed=seed,
        out=str(out),
    )
    train_teacher(config, log=None)
    return str(out)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("teachers")
    return [_train(root / f"t{i}", *recipe, seed=i) for i, recipe in enumerate(RECIPES)]


@pytest.fixture(scope="module")
def ranking(teachers: list[str]) -> TeacherRanking:
    return rank_teachers(teachers, device="cpu", precision="fp32")


def _val_ace(path: str) -> float:
    logits, labels = checkpoint_logits(path, ("val",), device="cpu", precision="fp32").logits["val"]
    return adaptive_calibration_error(logits, labels, n_bins=15)


def test_ranking_follows_the_independently_computed_val_ace(
    teachers: list[str], ranking: TeacherRanking
) -> None:
    ace = {p: _val_ace(p) for p in teachers}
    assert len(set(ace.values())) == 3  # distinct, so the order is unambiguous
    assert [r.path for r in ranking.rows] == sorted(teachers, key=ace.__getitem__)
    assert [r.rank for r in ranking.rows] == [1, 2, 3]
    for row in ranking.rows:
        assert row.metrics["ace"] == pytest.approx(ace[row.path], abs=1e-9)
        assert row.n_samples == 40  # the held-out val split, not test (64)
        assert row.checkpoint_id == checkpoint_id(row.path)
        assert {"accuracy", "nll", "ece", "ace", "oe", "entropy"} <= set(row.metrics)
        assert row.uncalibrated is None and row.calibrator is None
    assert [r.name for r in ranking.rows] == [Path(r.path).name for r in ranking.rows]
    assert ranking.notes == [] and ranking.dataset == "synthetic" and ranking.split == "val"
    headers, rows = ranking.table()
    assert "ace*" in headers and "ece" in headers and len(rows) == 3
    json.dumps(ranking.to_dict(), allow_nan=False)


def test_accuracy_criterion_ranks_higher_first(teachers: list[str], ranking: TeacherRanking) -> None:
    by_accuracy = rank_teachers(teachers, criterion="accuracy", device="cpu", precision="fp32")
    accs = [r.metrics["accuracy"] for r in by_accuracy.rows]
    assert accs == sorted(accs, reverse=True) and by_accuracy.higher_is_better
    for row in by_accuracy.rows:  # 1 + the number of strictly better teachers: ties share a rank
        assert row.rank == 1 + sum(a > row.metrics["accuracy"] for a in accs)


def test_temperature_calibration_is_fitted_on_val_and_flagged(
    teachers: list[str], ranking: TeacherRanking
) -> None:
    raw = {r.path: r.metrics for r in ranking.rows}
    calibrated = rank_teachers(teachers, calibration="temperature", device="cpu", precision="fp32")
    assert SAME_SPLIT_CAVEAT in calibrated.notes
    aces = [r.metrics["ace"] for r in calibrated.rows]
    assert aces == sorted(aces)
    for row in calibrated.rows:
        assert row.calibrator is not None and row.calibrator["temperature"] > 0
        assert row.calibrator["fit_split"] == "val"
        assert row.uncalibrated == raw[row.path]
        assert row.metrics["accuracy"] == raw[row.path]["accuracy"]  # T never changes the argmax
        assert row.metrics["nll"] <= raw[row.path]["nll"] + 1e-9  # the NLL optimum on this very split
    headers, _ = calibrated.table()
    assert "T" in headers and "raw ace" in headers


def test_stored_calibrators_are_used_with_auto(teachers: list[str], tmp_path: Path) -> None:
    from calikd.teacher.calibrate import calibrate_checkpoint

    copies = [shutil.copytree(p, tmp_path / Path(p).name) for p in teachers[:2]]
    with pytest.raises(ConfigError, match="has no calibrator"):
        rank_teachers(copies, calibration="auto", device="cpu", precision="fp32")
    for path in copies:
        calibrate_checkpoint(path, device="cpu", precision="fp32", plots=False)
    ranked = rank_teachers(copies, calibration="auto", device="cpu", precision="fp32")
    assert SAME_SPLIT_CAVEAT in ranked.notes
    for row in ranked.rows:
        assert row.calibrator is not None and row.calibrator["method"] == "temperature"
        assert row.calibrator["fit_split"] == "val" and row.calibrator["path"].endswith(".calibrator.json")
        assert row.uncalibrated is not None


def test_display_names() -> None:
    assert _display_names(["runs/a/t1", "runs/b/t2/last", "runs/t3/best.safetensors"]) == [
        "t1",
        "t2/last",
        "t3/best",
    ]
    assert _display_names(["x/a/last", "y/a/last"]) == ["x/a/last", "y/a/last"]


def test_bad_input_is_refused(teachers: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'ace'"):
        rank_teachers(teachers, criterion="acee")
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        rank_teachers(teachers, calibration="temprature")
    with pytest.raises(ConfigError, match="at least 2"):
        rank_teachers(teachers[:1])
    with pytest.raises(CheckpointError, match="no checkpoint"):
        rank_teachers([teachers[0], str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="same weights"):
        rank_teachers([teachers[0], teachers[0] + "/last"])
    four = _train(tmp_path / "four", 1, 0.05, 0.0, seed=0, num_classes=4)
    with pytest.raises(ConfigError, match="different tasks"):
        rank_teachers([teachers[0], four], device="cpu", precision="fp32")


# -- the check against the students actually obtained ---------------------------------------------------


def _add_run(
    store: ResultsStore,
    *,
    sweep: str,
    teacher: str | None,
    accuracy: float,
    seed: int,
    method: str = "kd",
    teacher_calibration: str = "none",
    status: str = "finished",
) -> None:
    config = {
        "teacher": f"runs/{teacher}",
        "student": "cnn",
        "method": method,
        "teacher_calibration": teacher_calibration,
        "seed": seed,
        "sweep": sweep,
    }
    run_id = run_id_for(config)
    hashes = {"teacher": teacher} if teacher else {}
    store.add_sweep(sweep)
    store.register(run_id, sweep=sweep, kind="distill", name=f"{sweep}-{seed}", config=config, hashes=hashes)
    assert store.claim(run_id)
    if status == "failed":
        store.fail(run_id, "boom")
    else:
        store.finish(run_id, {"student_test_accuracy": accuracy}, hashes=hashes)


@pytest.fixture(scope="module")
def store_path(ranking: TeacherRanking, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Sweep 's': predicted order A, B, C (by val ACE); observed student accuracies B > A > C."""
    a, b, c = (r.checkpoint_id for r in ranking.rows)
    path = str(tmp_path_factory.mktemp("db") / "calikd.db")
    with ResultsStore(path) as store:
        for teacher, accs in ((a, [0.68, 0.72]), (b, [0.78, 0.82]), (c, [0.60])):
            for seed, acc in enumerate(accs):
                _add_run(store, sweep="s", teacher=teacher, accuracy=acc, seed=seed)
        # none of these count for sweep 's', method 'kd', teacher calibration 'none'
        _add_run(store, sweep="s", teacher=None, accuracy=0.5, seed=0, method="ce")
        _add_run(store, sweep="s", teacher=a, accuracy=0.1, seed=0, teacher_calibration="temperature")
        _add_run(store, sweep="s", teacher=c, accuracy=0.99, seed=0, method="dkd")
        _add_run(store, sweep="s", teacher=b, accuracy=0.0, seed=7, status="failed")
        _add_run(store, sweep="s", teacher="f" * 16, accuracy=0.9, seed=0)
        _add_run(store, sweep="other", teacher=c, accuracy=0.0, seed=3)
        # sweep 'only-a': students of one teacher
        _add_run(store, sweep="only-a", teacher=a, accuracy=0.7, seed=0)
    return path


def test_check_against_students_matches_hand_computed_agreement(
    ranking: TeacherRanking, store_path: str
) -> None:
    with ResultsStore(store_path, create=False) as store:
        result = check_against_students(ranking, store, sweep="s", method="kd", calibration="none")
    names = [r.name for r in ranking.rows]
    assert result["message"] is None and result["teachers_matched"] == 3 and result["n_runs"] == 5
    observed = [t["student_accuracy"] for t in result["teachers"]]
    assert observed == pytest.approx([0.70, 0.80, 0.60])
    assert [t["n_runs"] for t in result["teachers"]] == [2, 2, 1]
    assert [t["seeds"] for t in result["teachers"]] == [[0, 1], [0, 1], [0]]
    assert [t["observed_rank"] for t in result["teachers"]] == [2, 1, 3]
    # predicted goodness ranks (3, 2, 1) vs observed (2, 3, 1): deviations (1, 0, -1) and (0, 1, -1)
    # rho = 1 / sqrt(2 * 2) = 0.5; pairs AB discordant, AC and BC concordant: tau = (2 - 1) / 3
    assert result["spearman_rho"] == pytest.approx(0.5)
    assert result["kendall_tau"] == pytest.approx(1 / 3)
    assert result["top1_agreement"] is False
    assert result["predicted_top"] == [names[0]] and result["observed_top"] == [names[1]]
    assert result["correlation"]["n"] == 3
    assert result["correlation"]["spearman_rho"] == pytest.approx(-0.5)  # raw: accuracy against ACE
    assert result["pooled"] == [{"student": "cnn", "method": "kd", "teacher_calibration": "none"}]
    json.dumps(result, allow_nan=False)


def test_check_against_students_filters_and_too_few(ranking: TeacherRanking, store_path: str) -> None:
    with ResultsStore(store_path, create=False) as store:
        pooled = check_against_students(ranking, store, sweep="s", calibration=None)
        single = check_against_students(ranking, store, sweep="only-a")
    # A: 0.68, 0.72, 0.1 (temperature); B: 0.78, 0.82; C: 0.60, 0.99 (dkd)
    assert [t["student_accuracy"] for t in pooled["teachers"]] == pytest.approx([1.5 / 3, 0.80, 0.795])
    assert len(pooled["pooled"]) == 3
    assert single["teachers_matched"] == 1 and single["spearman_rho"] is None
    assert "1 of the 3 ranked teachers have finished students" in single["message"]


def _fake_ranking(criterion: str, higher: bool, scores: list[float]) -> TeacherRanking:
    rows = [
        RankedTeacher(name=f"T{i}", path=f"T{i}", checkpoint_id=f"{i:016x}", model="m", n_samples=10,
                      metrics={criterion: s}, rank=i + 1)
        for i, s in enumerate(scores)
    ]  # fmt: skip
    return TeacherRanking(criterion, higher, "none", "synthetic", 15, rows)


@pytest.mark.parametrize(
    "criterion,higher,scores,students,rho,tau",
    [
        # accuracy predicts higher = better: students in the opposite order -> -1
        ("accuracy", True, [0.9, 0.8, 0.7], [0.4, 0.5, 0.6], -1.0, -1.0),
        # ACE predicts lower = better: students in the same order -> +1
        ("ace", False, [0.01, 0.02, 0.05], [0.9, 0.8, 0.7], 1.0, 1.0),
        # ties in the students: observed goodness ranks (1.5, 1.5, 3) vs predicted (3, 2, 1)... reversed
        ("ece", False, [0.01, 0.02, 0.03], [0.5, 0.5, 0.9], -0.8660254037844386, -0.8164965809277261),
    ],
)
def test_agreement_orientation(
    tmp_path: Path, criterion: str, higher: bool, scores: list, students: list, rho: float, tau: float
) -> None:
    ranking = _fake_ranking(criterion, higher, scores)
    with ResultsStore(tmp_path / "db.sqlite") as store:
        for row, acc in zip(ranking.rows, students, strict=True):
            _add_run(store, sweep="s", teacher=row.checkpoint_id, accuracy=acc, seed=0)
        result = check_against_students(ranking, store)
    assert result["spearman_rho"] == pytest.approx(rho)
    assert result["kendall_tau"] == pytest.approx(tau)
    assert result["top1_agreement"] is (rho == 1.0)


# -- CLI ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    if rank_teachers_cmd not in cli_module.SUBCOMMANDS:  # until the command is registered in calikd.cli
        monkeypatch.setattr(cli_module, "SUBCOMMANDS", (*cli_module.SUBCOMMANDS, rank_teachers_cmd))

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            code = main(["rank-teachers", *argv, "--device", "cpu", "--precision", "fp32"])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_prints_the_ranking_and_the_agreement(
    cli: Any, teachers: list[str], ranking: TeacherRanking, store_path: str, tmp_path: Path
) -> None:
    out_json = tmp_path / "rank.json"
    code, out, err = cli(
        [*teachers, "--db", store_path, "--sweep", "s", "--method", "kd", "--json", str(out_json)]
    )
    assert code == 0, err
    assert "ace*" in out and "entropy" in out and "ranking criterion: ace" in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[first + 2].split()[:2] == ["1", ranking.rows[0].name]
    assert "Spearman rho 0.500" in out and "Kendall tau 0.333" in out and "top-1 no" in out
    saved = json.loads(out_json.read_text())
    assert [t["name"] for t in saved["ranking"]["teachers"]] == [r.name for r in ranking.rows]
    assert saved["students"]["spearman_rho"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--criterion", "acee"], "did you mean 'ace'"),
        (["--calibration", "platt"], "invalid choice"),
        (["MISSING"], "no checkpoint at"),
    ],
)
def test_cli_errors_exit_2(
    cli: Any, teachers: list[str], argv: list[str], message: str, tmp_path: Path
) -> None:
    argv = [str(tmp_path / a) if a == "MISSING" else a for a in argv]
    code, _, err = cli([*teachers[:2], *argv])
    assert code == 2 and message in err


def test_cli_needs_two_checkpoints(cli: Any, teachers: list[str]) -> None:
    code, _, err = cli([teachers[0]])
    assert code == 2 and "at least 2" in err
