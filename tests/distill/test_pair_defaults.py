"""``--method-preset paper``: the authors' per-pair values under explicit options, shown by `methods`."""

from __future__ import annotations

from pathlib import Path

import pytest

from calikd.cli import main
from calikd.distill import distill
from calikd.distill.methods.dkd import DKD
from calikd.distill.registry import distiller_info, list_distillers, method_config, pair_options


def test_every_listed_pair_is_valid_for_its_method() -> None:
    for name in list_distillers():
        info = distiller_info(name)
        if info["pair_defaults"]:
            assert info["pair_source"], f"{name}: per-pair values without their source"
        for pair in info["pair_defaults"]:
            method_config(name, pair["options"])  # option names and values the method accepts
            assert pair_options(name, pair["teacher"], pair["student"]) == pair["options"]
    assert pair_options("kd", "resnet56", "resnet20") is None
    # values read from the authors' configs (see each method's pair_source)
    assert pair_options("dkd", "resnet56", "resnet20") == {"beta": 2.0}
    assert pair_options("dkd", "wrn_40_2", "wrn_16_2") == {"beta": 6.0}
    assert pair_options("catkd", "wrn_40_2", "shufflenetv1") == {
        "kd_weight": 80.0,
        "resolution": 4,
        "normalize": True,
    }
    assert pair_options("reviewkd", "resnet56", "resnet20") == {"kd_weight": 0.6}
    assert pair_options("kdpp", "resnet32x4", "resnet8x4") == {"kd_weight": 3.5, "nd_weight": 2.0}


def test_paper_preset_takes_the_pairs_values_under_explicit_options(
    distill_config, teacher_ckpt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the session's teacher is a resnet8 and the student a cnn: list that pair for DKD
    monkeypatch.setattr(DKD, "pair_defaults", {("resnet8", "cnn"): {"beta": 2.0, "tau": 3.0}})
    lines: list[str] = []
    config = distill_config(
        teacher_ckpt,
        tmp_path / "paper",
        method="dkd",
        method_preset="paper",
        method_options={"tau": 5.0},
        epochs=1,
    )
    result = distill(config, log=lines.append)
    options = result.extra["method_options"]
    assert options["beta"] == 2.0 and options["tau"] == 5.0  # the explicit option wins
    assert any("the authors' values for resnet8 -> cnn: {'beta': 2.0}" in line for line in lines)
    plain = distill(distill_config(teacher_ckpt, tmp_path / "default", method="dkd", epochs=1), log=None)
    assert "beta" not in plain.extra["method_options"]  # the method's default (8) applies


def test_paper_preset_without_values_for_the_pair_says_so(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    distill(distill_config(teacher_ckpt, tmp_path / "kd", method_preset="paper", epochs=1), log=lines.append)
    assert any("no per-pair values of kd for resnet8 -> cnn" in line for line in lines)


def test_methods_command_shows_the_pair_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DKD, "pair_defaults", {("resnet56", "resnet20"): {"beta": 2.0}})
    monkeypatch.setattr(DKD, "pair_source", "mdistiller configs/cifar100/dkd")
    assert main(["methods", "dkd"]) == 0
    out = capsys.readouterr().out
    assert "the authors' values per pair (`--method-preset paper`; mdistiller configs/cifar100/dkd)" in out
    assert "resnet56 -> resnet20" in out and "beta=2.0" in out
