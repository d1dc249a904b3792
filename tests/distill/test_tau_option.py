"""The distillation temperature is the method option ``tau``; ``temperature`` is its deprecated old spelling
(it still works for one release, with a deprecation warning), and runs written with it still resume."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from calikd.cli import main
from calikd.distill import DistillConfig, distill, method_config
from calikd.distill.registry import RENAMED_OPTIONS, pair_options, renamed_options
from calikd.distill.task import check_same_distillation as _check_same_distillation
from calikd.errors import CalikdDeprecationWarning, ConfigError

TAU_METHODS = ("kd", "dkd", "ls", "ttm", "wttm", "dist", "nkd", "rld", "sdd", "tfkd", "kdpp")


def test_the_distillation_temperature_is_tau_in_every_method_that_has_one() -> None:
    assert RENAMED_OPTIONS == {"temperature": "tau"}
    for name in TAU_METHODS:
        config = method_config(name, {"tau": 2.5})
        assert config.tau == 2.5 and not hasattr(config, "temperature")


@pytest.mark.parametrize("name", TAU_METHODS)
def test_the_old_spelling_still_works_with_a_deprecation_warning(name: str) -> None:
    with pytest.warns(CalikdDeprecationWarning, match="now called 'tau'"):
        config = method_config(name, {"temperature": 3.0})
    assert config.tau == 3.0
    assert issubclass(CalikdDeprecationWarning, DeprecationWarning)


def test_both_spellings_are_refused_and_other_methods_keep_their_errors() -> None:
    with pytest.raises(ConfigError, match="both 'tau' and 'temperature'"):
        method_config("kd", {"temperature": 3.0, "tau": 3.0})
    with pytest.raises(ConfigError, match="unknown key 'temperature'"):
        method_config("crd", {"temperature": 3.0})  # CRD never had the option: no rename
    with pytest.raises(ConfigError, match="unknown key 'tau'"):
        method_config("crd", {"tau": 3.0})
    with pytest.raises(ConfigError, match=r"did you mean 'tau'\? 'temperature' is its old spelling"):
        method_config("kd", {"temprature": 3.0})  # not 'temperature_on', the nearest field


def test_the_config_resolves_the_old_spelling_and_the_flag_to_tau() -> None:
    config = DistillConfig(teacher="t", method="kd", method_options={"temperature": 3.0})
    with pytest.warns(CalikdDeprecationWarning):
        assert config.method_options_resolved() == {"tau": 3.0}
    assert DistillConfig(teacher="t", method="dkd", tau=2.0).method_options_resolved() == {"tau": 2.0}
    clash = DistillConfig(teacher="t", method="kd", tau=2.0, method_options={"temperature": 3.0})
    with pytest.warns(CalikdDeprecationWarning), pytest.raises(ConfigError, match="contradicts"):
        clash.method_options_resolved()
    song = DistillConfig(
        teacher="t",
        method="kd",
        teacher_calibration="temperature",
        tau_from_calibration=True,
        method_options={"temperature": 3.0},
    )
    with pytest.warns(CalikdDeprecationWarning), pytest.raises(ConfigError, match="drop one of them"):
        song.method_options_resolved()


def test_stored_options_of_older_runs_compare_in_the_new_spelling() -> None:
    assert renamed_options({"temperature": 4.0, "beta": 2.0}) == {"tau": 4.0, "beta": 2.0}
    old = {"method": "kd", "method_options": {"temperature": 4.0}, "seed": 0}
    assert DistillConfig.comparable(old) == {"method": "kd", "method_options": {"tau": 4.0}, "seed": 0}
    assert DistillConfig.comparable({"seed": 0}) == {"seed": 0}
    saved = {"teacher": None, "method_options": {"temperature": 4.0}}
    _check_same_distillation(saved, None, {"tau": 4.0})
    with pytest.raises(ConfigError, match="the method options"):
        _check_same_distillation(saved, None, {"tau": 2.0})
    assert pair_options("dkd", "resnet56", "resnet20") == {"beta": 2.0}


class _Stop(Exception):
    pass


def _as_written_by_an_older_version(stem: Path) -> None:
    """Rewrite a checkpoint's metadata as a version that called the option 'temperature' wrote it."""
    path = stem.with_suffix(".json")
    meta = json.loads(path.read_text())
    for section in (meta["config"], meta["distillation"]):
        section["method_options"] = {"temperature": section["method_options"].pop("tau")}
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("spelling", ["temperature", "tau"])
def test_a_run_written_with_the_old_spelling_resumes(
    distill_config, teacher_ckpt: str, tmp_path: Path, spelling: str
) -> None:
    def stop(step: int) -> None:
        if step == 9 + 4:
            raise _Stop

    common = dict(method_options={"tau": 2.0}, epochs=2)
    with pytest.raises(_Stop):
        distill(distill_config(teacher_ckpt, tmp_path / "cut", **common), on_step=stop, log=None)
    _as_written_by_an_older_version(tmp_path / "cut" / "last")
    again = dict(method_options={spelling: 2.0}, epochs=2)
    with pytest.warns(CalikdDeprecationWarning) if spelling == "temperature" else _no_warning():
        resumed = distill(distill_config(teacher_ckpt, tmp_path / "cut", resume=True, **again), log=None)
    full = distill(distill_config(teacher_ckpt, tmp_path / "full", **common), log=None)
    assert resumed.student_test_last == full.student_test_last
    assert resumed.extra["method_options"] == {"tau": 2.0}


def _no_warning() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def test_the_cli_prints_a_deprecation_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "distill",
            "--teacher",
            str(tmp_path / "missing"),
            "--method-options",
            "temperature=3",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "deprecated: method option 'temperature' of 'kd' is now called 'tau'" in err
