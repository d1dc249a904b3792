"""Bad input is refused at the boundary with messages that say what is wrong and what to do."""

from __future__ import annotations

import warnings

import pytest
import torch

from calikd.calibration import (
    CalibrationOnTestWarning,
    HistogramBinning,
    MatrixScaling,
    NotFittedError,
    TemperatureScaling,
    VectorScaling,
    create_calibrator,
    list_calibrators,
)
from calikd.errors import ConfigError

ALL = ["temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"]


def test_every_method_is_registered() -> None:
    assert list_calibrators() == sorted(ALL)


def test_all_predictions_wrong() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [1.0, -1.0, 4.0], [5.0, 0.0, 0.5]])
    labels = torch.tensor([1, 2, 0, 2])
    with pytest.raises(ConfigError, match=r"every one of the 4 predictions is wrong") as exc:
        TemperatureScaling().fit(logits, labels)
    assert "aligned with the logits" in str(exc.value)


def test_all_predictions_right() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [1.0, -1.0, 4.0], [5.0, 0.0, 0.5]])
    with pytest.raises(ConfigError, match=r"every one of the 4 predictions is correct.*T -> 0") as exc:
        TemperatureScaling().fit(logits, torch.tensor([0, 1, 2, 0]))
    assert "val split on which the model makes some mistakes" in str(exc.value)


def test_logits_no_better_than_chance() -> None:
    # two of three right, but the wrong rows put the true class far below the row mean
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [10.0, 10.0, -50.0]])
    with pytest.raises(ConfigError, match=r"no better than chance.*T -> inf"):
        TemperatureScaling().fit(logits, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("name", ALL)
def test_one_class_is_refused(name: str) -> None:
    logits = torch.randn(40, 4)
    with pytest.raises(ConfigError, match=r"all 40 labels are class 2") as exc:
        create_calibrator(name).fit(logits, torch.full((40,), 2))
    assert "covers the classes" in str(exc.value)


@pytest.mark.parametrize("name", ALL)
def test_probabilities_passed_as_logits(name: str, synthetic) -> None:
    logits, labels = synthetic(300, 4, seed=0)
    probs = torch.softmax(logits, dim=1)
    with pytest.raises(
        ConfigError, match=r"these look like probabilities; pass logits or use `from_probs=True`"
    ):
        create_calibrator(name).fit(probs, labels)
    cal = create_calibrator(name).fit(logits, labels)
    with pytest.raises(ConfigError, match=r"look like probabilities"):
        cal.transform(probs)
    cal_p = create_calibrator(name).fit(probs, labels, from_probs=True)
    assert cal_p.transform(probs).shape == probs.shape


def test_from_probs_with_logits_is_refused(synthetic) -> None:
    logits, labels = synthetic(200, 4, seed=1)
    with pytest.raises(ConfigError, match=r"from_probs=True but these are not probabilities"):
        TemperatureScaling().fit(logits, labels, from_probs=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf(bad: float, synthetic) -> None:
    logits, labels = synthetic(200, 4, seed=2)
    logits[3, 1] = bad
    with pytest.raises(ConfigError, match="NaN or inf"):
        TemperatureScaling().fit(logits, labels)
    cal = TemperatureScaling().fit(*synthetic(200, 4, seed=2))
    with pytest.raises(ConfigError, match="NaN or inf"):
        cal.transform(logits)


def test_labels_out_of_range_and_bad_shapes(synthetic) -> None:
    logits, labels = synthetic(200, 4, seed=3)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\]"):
        TemperatureScaling().fit(logits, labels + 1)
    with pytest.raises(ConfigError, match="labels"):
        TemperatureScaling().fit(logits, labels.float())
    with pytest.raises(ConfigError, match=r"shape \(N, C\)"):
        TemperatureScaling().fit(logits[0], labels)
    with pytest.raises(ConfigError, match="labels"):
        TemperatureScaling().fit(logits, labels[:-1])


def test_class_count_mismatch(synthetic) -> None:
    cal = TemperatureScaling().fit(*synthetic(500, 10, seed=4))
    with pytest.raises(ConfigError, match=r"TemperatureScaling was fitted on 10 classes, got 100"):
        cal.transform(torch.randn(5, 100))


def test_too_few_samples_per_class_says_how_many_are_needed(synthetic) -> None:
    logits, labels = synthetic(400, 5, seed=5)
    keep = torch.cat([torch.nonzero(labels != 3).flatten(), torch.nonzero(labels == 3).flatten()[:2]])
    with pytest.raises(ConfigError, match=r"MatrixScaling needs at least 5 samples of every class") as exc:
        MatrixScaling().fit(logits[keep], labels[keep])
    assert "class 3: 2" in str(exc.value) and "30 parameters" in str(exc.value)
    assert "TemperatureScaling" in str(exc.value)  # what to do instead
    VectorScaling().fit(logits[keep], labels[keep])  # needs only 2 per class
    with pytest.raises(ConfigError, match=r"HistogramBinning needs at least 15 samples"):
        HistogramBinning(n_bins=15).fit(logits[:10], labels[:10])


@pytest.mark.parametrize("name", ALL)
def test_transform_and_save_before_fit(name: str, tmp_path) -> None:
    cal = create_calibrator(name)
    assert not cal.fitted
    with pytest.raises(
        NotFittedError, match=r"(?s)is not fitted yet.*call \.fit\(val_logits, val_labels\) first"
    ):
        cal.transform(torch.randn(3, 4))
    with pytest.raises(NotFittedError, match="cannot be saved"):
        cal.save(tmp_path / "cal")
    assert isinstance(NotFittedError("x"), ConfigError)


def test_fitting_on_test_warns(synthetic) -> None:
    logits, labels = synthetic(300, 4, seed=6)
    with pytest.warns(
        CalibrationOnTestWarning, match="fit calibration on the held-out val split, never on test"
    ):
        cal = TemperatureScaling().fit(logits, labels, split="test")
    assert cal.record["split"] == "test"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaling().fit(logits, labels, split="val")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("temperature", {"t_min": 2.0, "t_max": 1.0}, "0 < t_min < t_max"),
        ("temperature", {"t_min": 0.0}, "0 < t_min < t_max"),
        ("temperature", {"objective": "auc"}, "unknown objective 'auc'; valid: nll, ece, ace, brier"),
        ("matrix", {"lam": -1.0}, "must be finite and >= 0"),
        ("histogram", {"binning": "quantile"}, "unknown binning 'quantile'; valid: width, mass"),
        ("histogram", {"n_bins": 0}, "n_bins must be >= 1"),
        ("isotonic", {"floor": 0.0}, r"floor must lie in \(0, 1\)"),
        ("matrix", {"lr": 0.1}, "unknown argument.*lr.*accepts: lam, mu, max_iter, tol"),
        ("vector", {"lam": 0.1}, "unknown argument.*lam.*accepts: mu, max_iter, tol"),
    ],
)
def test_bad_hyperparameters(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_calibrator(name, **kwargs)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown calibrator 'temprature' \(did you mean 'temperature'\?\)"
    ):
        create_calibrator("temprature")
    with pytest.raises(ConfigError, match="valid calibrators: dirichlet, histogram, isotonic, matrix"):
        create_calibrator("platt")
    assert isinstance(create_calibrator("Temperature"), TemperatureScaling)


@pytest.mark.parametrize("name", ALL)
def test_every_method_records_the_same_keys_and_handles_odd_inputs(name: str, synthetic) -> None:
    logits, labels = synthetic(400, 4, 2.0, seed=7)
    cal = create_calibrator(name).fit(logits.to(torch.bfloat16), labels)
    keys = {
        "method",
        "params",
        "hyperparams",
        "n_samples",
        "num_classes",
        "objective",
        "iterations",
        "converged",
    }
    assert keys | {"nll_before", "nll_after", "ece_before", "ece_after", "split", "from_probs"} <= set(
        cal.record
    )
    assert cal.record["n_samples"] == 400 and cal.record["num_classes"] == 4
    assert cal.transform(logits.half()).dtype == torch.float32
    empty = cal.transform(torch.zeros(0, 4))
    assert empty.shape == (0, 4) and empty.dtype == torch.float32
    out = cal.transform(logits.double())
    assert out.shape == logits.shape and bool(torch.isfinite(out).all())
