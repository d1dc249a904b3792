"""The documents of report/ from plain data: run, calibration, ranking, sweep cells, the column presets and
the one-seed rule of their mean ± std cells."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from calikd.experiments.protocol import teacher_checks
from calikd.metrics import calibration_report
from calikd.report.calibration import calibration_markdown, calibration_rows
from calikd.report.columns import CALIBRATION, RUN, RUN_CONSOLE, STUDENT, MetricColumns
from calikd.report.ranking import ranking_legend, ranking_table
from calikd.report.run import convergence_text, run_markdown, run_rows
from calikd.report.sweep import SweepResults, cell, sweep_document

METRICS = {"accuracy": 0.5, "nll": 1.25, "ece": 0.1, "ace": 0.125, "entropy": 1.0, "brier": 0.5, "oe": 0.0}


def _run() -> dict:
    test = {"raw": METRICS, "calibrated": {**METRICS, "ece": 0.05}}
    return {
        "best_epoch": 2,
        "student_test_last": METRICS,
        "student_test_best": {**METRICS, "accuracy": 0.75},
        "teacher": {
            "model": "resnet20",
            "checkpoint": "runs/t/last",
            "calibration_source": "temperature",
            "temperature": 1.5,
            "metrics": {"full": {"test": test}, "low": {"test": {"raw": METRICS}}},
        },
        "wall_time_s": 12.0,
        "train_images_per_s": 800.0,
        "precision": "fp32",
        "device": "cpu",
        "convergence": {
            "converged": False,
            "reason": "1 epoch(s): a plateau needs 3",
            "final_lr_ratio": None,
            "accuracy_split": "val",
            "accuracy_range": None,
            "band": 0.01,
            "last_epochs": 3,
        },
        "cache": None,
        "extra": {
            "dataset": "synthetic",
            "method_options": {"tau": 4.0},
            "config": {"student": "cnn", "method": "kd", "epochs": 2, "seed": 0, "kd_augment": "none"},
        },
    }


def test_presets_name_their_headers() -> None:
    assert RUN_CONSOLE.headers == RUN_CONSOLE.keys == ("accuracy", "nll", "ece", "ace", "entropy")
    assert list(STUDENT) == ["accuracy", "ece", "ace", "nll", "entropy"] and len(RUN) == 7
    named = MetricColumns(("ece", "ace"), ("ECE %", "ACE %"))
    assert named.headers == ("ECE %", "ACE %") and named.values({"ece": 0.1}) == [0.1, None]


def test_run_rows_are_one_table_for_every_view() -> None:
    rows = run_rows(_run(), RUN_CONSOLE, last_label="student, last (epoch 2)", views=("full",))
    assert [r[0] for r in rows] == [
        "student, last (epoch 2)",
        "student, best on val (epoch 2)",
        "teacher, uncalibrated",
        "teacher, calibrated",
    ]
    assert rows[1][1] == 0.75 and rows[3][3] == 0.05
    labels = [r[0] for r in run_rows(_run(), RUN)]
    assert labels[-1] == "teacher, uncalibrated (low-resolution input)"


def test_run_markdown_from_the_plain_dict() -> None:
    text = run_markdown(_run())
    assert text.startswith("# Distillation: resnet20 -> cnn (kd)\n")
    assert "- teacher `runs/t/last`; calibration: temperature, T = 1.5000" in text
    assert "- convergence: NOT converged: 1 epoch(s): a plateau needs 3" in text
    assert "| student, best on val (epoch 2) | 0.7500 | 1.2500 |" in text
    assert text.endswith("![reliability diagrams on the test split](reliability.png)\n")


def test_convergence_text_of_a_converged_run() -> None:
    done = {
        "converged": True,
        "final_lr_ratio": 0.01,
        "accuracy_split": "val",
        "accuracy_range": 0.004,
        "band": 0.01,
        "last_epochs": 3,
    }
    assert convergence_text(done) == (
        "converged (lr annealed to 0.01x its peak; val accuracy range 0.0040 <= 0.01 over the last 3 epochs)"
    )


def test_calibration_document() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(64, 3), torch.randint(0, 3, (64,))
    before = calibration_report(logits, labels)
    after = {"temperature": calibration_report(logits / 2, labels)}
    rows = calibration_rows(before, after)
    assert [r[0] for r in rows] == ["uncalibrated", "temperature"] and len(rows[0]) == len(CALIBRATION) + 1
    text = calibration_markdown(
        checkpoint="runs/t/last",
        dataset="synthetic",
        fit_split="val",
        objective="nll",
        before=before,
        after=after,
        params={"temperature": {"temperature": 2.0}},
        plot="runs/t/last.calibration.png",
    )
    assert "| calibrator | accuracy | nll | brier |" in text and "| temperature=2 |" in text
    assert text.endswith("(last.calibration.png)\n")


def test_ranking_table_marks_the_criterion() -> None:
    ranking = {
        "criterion": "ace",
        "higher_is_better": False,
        "calibration": "temperature",
        "split": "val",
        "n_bins": 15,
        "teachers": [
            {
                "rank": 1,
                "name": "t1",
                "model": "cnn",
                "checkpoint_id": "abc",
                "metrics": {"ace": 0.1},
                "uncalibrated": {"ace": 0.2},
                "calibrator": {"temperature": 1.5},
            }
        ],
    }
    headers, rows = ranking_table(ranking)
    assert headers[4] == "T" and "ace*" in headers and headers[-1] == "raw ace"
    assert rows[0][:5] == [1, "t1", "cnn", "abc", 1.5] and rows[0][5] == "-" and rows[0][-1] == 0.2
    assert "after temperature calibration (lower predicts a better student)" in ranking_legend(ranking)


def test_mean_std_cells_follow_the_one_seed_rule() -> None:
    assert cell([0.5]) == "0.5000"  # one seed: the mean alone
    assert cell([0.5, None, 0.7]) == "0.6000 ± 0.1414"
    assert cell([None]) == "n/a"


def _record(kind: str, run_id: str, config: dict, metrics: dict) -> SimpleNamespace:
    fields = {"status": "finished", "artifacts": {}, "out_dir": None}
    return SimpleNamespace(kind=kind, name=run_id, run_id=run_id, config=config, metrics=metrics, **fields)


def test_sweep_document_from_plain_records(tmp_path: Path) -> None:
    teacher = _record("calibrate", "t1-calibrate", {"checkpoint": "runs/t1/last"}, {"test_raw_accuracy": 0.9})
    student = {"teacher": "runs/t1/last", "student": "cnn", "method": "kd", "teacher_calibration": "none"}
    students = [
        _record(
            "distill", f"s{i}", {**student, "kd_augment": "none", "seed": i}, {"student_test_accuracy": a}
        )
        for i, a in enumerate((0.5, 0.7))
    ]
    results = SweepResults([teacher, *students])
    check = SimpleNamespace(name="t1", converged=None, floor=None, below=False)
    doc = sweep_document(
        results,
        tmp_path,
        sweep="grid",
        source="calikd.db",
        counts={"finished": 3},
        teacher_checks={"runs/t1/last": check},
        default_tau=lambda method: 4.0,
    )
    text = doc.text()
    assert "# Sweep `grid`" in text and "3 runs in `calikd.db`: 3 finished" in text
    assert "| t1, cnn, kd, cal=none |" in text and "0.6000 ± 0.1414" in text


def test_a_teacher_trained_by_another_sweep_keeps_its_convergence_and_floor_check() -> None:
    trained = _record("teacher", "cnn-1234abcd", {"model": "cnn"}, {"converged": 1.0})
    trained.out_dir = "runs/zoo/teachers/cnn-1234abcd"  # where the first sweep trained it
    here = "runs/paper/teachers/cnn-1234abcd/last"  # this sweep's copy of it
    cal = _record("calibrate", "cnn-calibrate", {"checkpoint": here}, {"test_raw_accuracy": 0.905})
    other = _record("calibrate", "mlp-calibrate", {"checkpoint": "elsewhere/mlp/last"}, {})
    results = SweepResults([trained, cal, other])
    assert results.teacher_run(here) is trained and results.teacher_run("elsewhere/mlp/last") is None
    checks = teacher_checks(results, {"*": 0.91})
    assert (checks[here].converged, checks[here].below) == (1.0, True)
    assert checks["elsewhere/mlp/last"].converged is None
