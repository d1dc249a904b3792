"""`calikd runs list|show|export`: the command line of the results store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from results_helpers import CFG, add_run

import calikd.cli
from calikd.cli import runs_cmd
from calikd.results import (
    ResultsStore,
    run_id_for,
)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``calikd.cli.main`` with the runs command registered; returns (exit code, stdout, stderr)."""
    if runs_cmd not in calikd.cli.SUBCOMMANDS:
        monkeypatch.setattr(calikd.cli, "SUBCOMMANDS", (*calikd.cli.SUBCOMMANDS, runs_cmd))

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = calikd.cli.main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "calikd.db"
    with ResultsStore(path, worker="host:1") as s:
        teacher = add_run(s, {"model": "resnet20", "seed": 0}, kind="teacher")
        s.claim(teacher)
        s.finish(
            teacher,
            {"accuracy": 0.9125, "ece": 0.031, "nll": 0.3, "brier": 0.1, "top5": 0.99},
            {"best": "runs/t/best.safetensors"},
            out_dir="runs/t",
            wall_time_s=3725.0,
        )
        failed = add_run(s, CFG)
        s.claim(failed)
        s.fail(failed, "RuntimeError: boom")
        add_run(s, {**CFG, "tau": 1.0}, sweep="s2")
    return path


def test_cli_list(cli, db: Path) -> None:
    code, out, err = cli("runs", "list", "--db", str(db))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "id",
        "sweep",
        "kind",
        "name",
        "status",
        "accuracy",
        "ece",
        "nll",
        "brier",
        "wall",
    ]
    assert "0.9125" in out and "1h02m" in out and "failed" in out
    assert lines[-1] == "3 runs: 1 pending, 1 finished, 1 failed"
    code, out, _ = cli("runs", "list", "--db", str(db), "--status", "finished", "--kind", "teacher")
    assert code == 0 and "1 run: 1 finished" in out and "failed" not in out
    code, out, _ = cli("runs", "list", "--db", str(db), "--sweep", "s2", "--metrics", "top5")
    assert code == 0 and "top5" in out and "pending" in out
    code, out, _ = cli("runs", "list", "--db", str(db), "--kind", "calibrate")
    assert code == 0 and out.startswith("no runs in") and "--kind calibrate" in out
    code, _, err = cli("runs", "list", "--db", str(db), "--metrics", "acuracy")
    assert code == 2 and "did you mean 'accuracy'" in err
    code, _, err = cli("runs", "list", "--db", str(db), "--status", "done")
    assert code == 2 and "invalid choice" in err


def test_cli_show(cli, db: Path) -> None:
    with ResultsStore(db, create=False) as s:
        teacher = s.list_runs(kind="teacher")[0]
    code, out, err = cli("runs", "show", teacher.run_id[:6], "--db", str(db))
    assert code == 0, err
    assert teacher.run_id in out and "finished (attempt 1, worker host:1)" in out
    assert "model  resnet20" in out and "accuracy  0.9125" in out and "runs/t/best.safetensors" in out
    code, out, _ = cli("runs", "show", teacher.name, "--db", str(db), "--json")
    assert code == 0 and json.loads(out)["metrics"]["ece"] == 0.031
    code, out, _ = cli("runs", "show", run_id_for(CFG), "--db", str(db))
    assert code == 0 and "RuntimeError: boom" in out and "student.width  16" in out
    code, _, err = cli("runs", "show", teacher.run_id[:3] + "z", "--db", str(db))
    assert code == 2 and "error: no run" in err and "did you mean" in err and "hint:" in err


def test_cli_export(cli, db: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "export" / "runs.csv"
    code, out, err = cli("runs", "export", "--csv", str(out_csv), "--db", str(db), "--sweep", "s1")
    assert code == 0, err
    assert out.strip() == f"wrote 2 runs to {out_csv}"
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert sorted(r["status"] for r in rows) == ["failed", "finished"]
    code, out, _ = cli("runs", "export", "--csv", "-", "--db", str(db))
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 3


def test_cli_missing_or_bad_db(cli, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "calikd.db"
    for argv in (("list",), ("show", "abc"), ("export", "--csv", str(tmp_path / "x.csv"))):
        code, out, err = cli("runs", *argv, "--db", str(missing))
        assert code == 2 and out == ""
        assert f"error: no results database at '{missing}'" in err and "calikd sweep FILE.yaml" in err
    assert not missing.parent.exists() and not (tmp_path / "x.csv").exists()
    bad = tmp_path / "bad.db"
    bad.write_text("hello")
    code, _, err = cli("runs", "list", "--db", str(bad))
    assert code == 2 and "bad.db' is not a calikd results database" in err
