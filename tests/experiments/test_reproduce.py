"""Reproductions: every preset expands into a valid sweep; the paper protocols run on tiny synthetic data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from calikd.cli import main
from calikd.errors import ConfigError
from calikd.experiments import expand, load_spec, parse_spec
from calikd.experiments.studies import (
    PRESETS,
    Study,
    build_spec,
    get_study,
    list_studies,
    register_study,
    reproduce,
)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", list_studies())
def test_every_preset_is_a_valid_sweep(name: str, preset: str) -> None:
    spec = parse_spec(build_spec(name, preset))
    plans = expand(spec)
    kinds = {p.kind for p in plans}
    robust = {"corrupt", "robustness"} if name == "mishra2023" else set()
    assert kinds == {"teacher", "calibrate", "distill", *robust}
    if preset == "paper":
        assert spec.dataset == "cifar100" and spec.distill["epochs"] == 240
    else:
        assert spec.dataset == "fashion-mnist"
    if preset != "paper":
        assert spec.teacher_floors
    if name == "kim2025":
        assert len(spec.teachers) >= (5 if preset == "quick" else 10)


def test_unknown_names_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="did you mean 'kim2025'"):
        build_spec("kim2024", "quick")
    with pytest.raises(ConfigError, match="unknown preset"):
        build_spec("kim2025", "fast")
    with pytest.raises(SystemExit):
        main(["reproduce", "kim2024"])
    assert "invalid choice" in capsys.readouterr().err


def test_cuk2023_quick_smoke_runs_and_reports(tmp_path: Path) -> None:
    outcome, (md, html) = reproduce(
        "cuk2023",
        "quick",
        db_path=str(tmp_path / "db.sqlite"),
        smoke=True,
        out=str(tmp_path / "out"),
        log=None,
    )
    assert outcome.ok
    text = md.read_text()
    assert "## The claim" in text and "Spearman rho(tau, student entropy)" in text
    assert "## Students vs distillation temperature" in text and html.exists()
    # the protocol table: floors, convergence and the temperature spread, whatever they came out as
    assert "### Protocol checks" in text
    for check in (
        "teachers at or above their accuracy floor",
        "teachers converged",
        "teacher temperatures (fitted on val)",
        "students converged",
    ):
        assert re.search(rf"\| {re.escape(check)} +\| ", text), check


@pytest.mark.slow
@pytest.mark.parametrize("name", list_studies())
def test_paper_protocols_run_on_tiny_synthetic_data(name: str, tmp_path: Path) -> None:
    outcome, (md, _) = reproduce(
        name, "paper", db_path=str(tmp_path / "db.sqlite"), smoke=True, out=str(tmp_path / "out"), log=None
    )
    assert outcome.ok, outcome.failed
    assert "## The claim" in md.read_text()


def test_dry_run_and_export_spec_match_the_reproduction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reproduce", "cuk2023", "--preset", "full", "--dry-run"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    expected = expand(parse_spec(build_spec("cuk2023", "full")))
    assert printed[-1] == "1 teacher, 1 calibrate, 66 distill"
    assert len(printed) == len(expected) + 1
    assert {line.split()[1] for line in printed[:-1]} == {p.run_id[:8] for p in expected}

    path = tmp_path / "cuk.yaml"
    assert main(["reproduce", "cuk2023", "--preset", "full", "--export-spec", str(path)]) == 0
    assert [p.run_id for p in expand(load_spec(path))] == [p.run_id for p in expected]
    assert not (tmp_path / "db.sqlite").exists()


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "kim2025", "--workers", "0"]) != 0
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


def test_the_student_alone_runs_once_whatever_the_teacher_input() -> None:
    plans = expand(parse_spec(build_spec("cuk2023", "full")))
    alone = [p for p in plans if p.kind == "distill" and p.config["method"] == "ce"]
    assert len(alone) == 2 * 3  # resolutions x seeds
    assert {p.config["teacher_input"] for p in alone} == {"full"}


def test_studies_are_registered_one_module_each_with_their_metadata() -> None:
    assert list_studies() == ["cuk2023", "kim2025", "mishra2023", "song2021", "tian2020"]
    for name in list_studies():
        study = get_study(name)
        assert isinstance(study, Study) and study.name == name
        assert type(study).__module__ == f"calikd.experiments.studies.{name}"
        assert study.paper and study.claim and study.their_number and study.presets == PRESETS
    with pytest.raises(ValueError, match="registered twice"):
        register_study("kim2025")(type(get_study("kim2025")))
    with pytest.raises(ConfigError, match="choose one of: song2021, kim2025, mishra2023, cuk2023, tian2020"):
        get_study("nope")


def test_the_full_presets_share_one_teacher_zoo_on_the_whole_split() -> None:
    from calikd.experiments.presets import FULL_SUBSET

    plans = {
        name: expand(parse_spec(build_spec(name, "full"), default_name=name))
        for name in ("kim2025", "song2021", "cuk2023", "mishra2023", "tian2020")
    }
    teachers = {name: {p.run_id: p for p in ps if p.kind == "teacher"} for name, ps in plans.items()}
    assert len(teachers["kim2025"]) >= 16  # the zoo size
    for name in ("cuk2023", "mishra2023"):  # trained once, reused: the same runs
        assert set(teachers[name]) <= set(teachers["kim2025"])
    # song2021's ladder: the zoo's recipes on one schedule (the longest, after the floor rule's retraining)
    ladder = [p.config for p in teachers["song2021"].values()]
    assert [c["model"] for c in ladder] == ["cnn_tiny", "cnn_small", "cnn"]
    assert len({c["epochs"] for c in ladder}) == 1
    zoo_recipes = [{**p.config, "epochs": None} for p in teachers["kim2025"].values()]
    assert all({**c, "epochs": None} in zoo_recipes for c in ladder)
    assert set(teachers["song2021"]) & set(teachers["kim2025"])  # the rung the zoo has at that schedule
    configs = [p.config for ps in teachers.values() for p in ps.values()]
    assert all("train_subset" not in c["dataset_options"] for c in configs)  # the whole training split
    assert any(c.get("label_smoothing") for c in configs)  # under-confident by a real mechanism
    assert any(c.get("weight_decay") == 0.0 and c.get("augment") is False for c in configs)  # over-confident
    students = [p for ps in plans.values() for p in ps if p.kind == "distill"]
    assert all(p.config["dataset_options"]["train_subset"] == FULL_SUBSET for p in students)
    assert all(p.config["seed"] in (0, 1, 2) for p in students)
