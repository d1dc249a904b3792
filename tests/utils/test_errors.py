"""The error helpers: did-you-mean suggestions."""

from __future__ import annotations

from calikd.errors import TrainingDivergedError, did_you_mean


def test_did_you_mean_picks_the_closest_name() -> None:
    assert did_you_mean("kdd", ["crd", "kd", "dkd"]) == " (did you mean 'kd'?)"
    assert did_you_mean("zzz", ["kd", "dkd"]) == ""
    assert did_you_mean("x", []) == ""


def test_equally_close_names_are_told_apart_by_the_shared_prefix_then_order() -> None:
    # 'resnet2O' is as close to resnet20 as to resnet32 by difflib's ratio; the prefix decides
    assert did_you_mean("resnet2O", ["resnet8", "resnet20", "resnet32"]) == " (did you mean 'resnet20'?)"
    assert did_you_mean("resnet2O", ["resnet32", "resnet20"]) == " (did you mean 'resnet20'?)"
    assert did_you_mean("ab", ["ax", "ay"]) == " (did you mean 'ax'?)"  # a full tie: the first listed


def test_training_diverged_error_says_what_to_do() -> None:
    err = TrainingDivergedError("training diverged: the loss is nan")
    assert isinstance(err, FloatingPointError)
    assert "--lr" in str(err) and err.exit_code == 2
