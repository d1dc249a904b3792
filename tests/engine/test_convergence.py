"""The convergence check: annealed schedule and settled accuracy, with the reason when either fails."""

from __future__ import annotations

import pytest

from calikd.engine.convergence import BAND, check_convergence


def _history(lrs, accs, split="val"):
    return [
        {"epoch": i + 1, "lr": lr, f"{split}_accuracy": a}
        for i, (lr, a) in enumerate(zip(lrs, accs, strict=True))
    ]


def test_annealed_and_settled_is_converged():
    c = check_convergence(_history([0.1, 0.05, 0.01, 0.001], [0.80, 0.910, 0.912, 0.914]), peak_lr=0.1)
    assert c.converged and c.annealed and c.settled and c.reason == ""
    assert c.final_lr_ratio == pytest.approx(0.01)
    assert c.accuracy_range == pytest.approx(0.004) and c.accuracy_range <= BAND


def test_still_rising_accuracy_is_not_converged():
    c = check_convergence(_history([0.1, 0.05, 0.01, 0.0], [0.80, 0.85, 0.88, 0.90]), peak_lr=0.1)
    assert c.annealed and not c.settled and not c.converged
    assert c.accuracy_range == pytest.approx(0.05)
    assert "val accuracy still moving (0.0500" in c.reason
    assert c.describe().startswith("NOT converged")


def test_constant_learning_rate_never_counts_as_annealed():
    c = check_convergence(_history([0.1] * 5, [0.9, 0.91, 0.911, 0.911, 0.911]), peak_lr=0.1)
    assert c.settled and not c.annealed and not c.converged
    assert "not annealed (ends at 1x its peak, needs <= 0.1)" in c.reason


def test_fewer_epochs_than_the_window_cannot_show_a_plateau():
    c = check_convergence(_history([0.05, 0.0], [0.8, 0.9]), peak_lr=0.1)
    assert not c.converged and c.accuracy_range is None
    assert "2 epoch(s): a plateau needs 3" in c.reason


def test_without_a_val_split_training_accuracy_is_used_and_warmup_peak_counts():
    h = _history([0.02, 0.2, 0.1, 0.01], [0.7, 0.9, 0.903, 0.904], split="train")
    c = check_convergence(h, peak_lr=0.1)  # the recorded 0.2 is above the configured lr: it is the peak
    assert c.accuracy_split == "train" and c.final_lr_ratio == pytest.approx(0.05) and c.converged


def test_band_and_window_are_parameters():
    h = _history([0.1, 0.01, 0.001, 0.0001], [0.9, 0.9, 0.91, 0.92])
    assert not check_convergence(h).converged
    assert check_convergence(h, band=0.02).converged
    assert check_convergence(h, last_epochs=2, band=0.01).converged


def test_a_run_settled_at_chance_has_collapsed_and_did_not_converge():
    flat = _history([0.1, 0.05, 0.01, 0.0], [0.1, 0.1001, 0.0999, 0.1])  # a DKD student dead in epoch 1
    assert check_convergence(flat, peak_lr=0.1).converged  # without the chance level nothing tells
    c = check_convergence(flat, peak_lr=0.1, chance=0.1)
    assert c.collapsed and c.annealed and c.settled and not c.converged
    assert c.reason == "collapsed: val accuracy 0.1000, chance is 0.1000"
    edge = 0.1 + 0.1 * 0.9  # 10% of the way from chance (10 classes) to 100%
    assert check_convergence(_history([0.1, 0.01, 0.0], [edge] * 3), chance=0.1).collapsed
    assert not check_convergence(_history([0.1, 0.01, 0.0], [edge + 0.001] * 3), chance=0.1).collapsed
    two = check_convergence(_history([0.1, 0.01, 0.0], [0.56] * 3), chance=0.5)  # 2 classes: 55% bound
    assert two.converged and not two.collapsed
