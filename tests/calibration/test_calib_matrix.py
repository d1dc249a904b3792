"""Vector / matrix scaling and Dirichlet calibration: they fix a class-wise bias; ODIR by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from calikd.calibration import (
    CalibrationConvergenceWarning,
    DirichletCalibration,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    odir_penalty,
)

BIAS = torch.tensor([2.0, -1.0, 0.5, -2.0, 0.0])


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.double(), labels))


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling, DirichletCalibration])
def test_a_class_wise_bias_is_corrected(cls, synthetic) -> None:
    logits, labels = synthetic(3000, 5, 1.0, seed=0, bias=BIAS)
    fit_logits, fit_labels = logits[:1500], labels[:1500]
    held_logits, held_labels = logits[1500:], labels[1500:]
    cal = cls().fit(fit_logits, fit_labels, split="val")
    rec = cal.record
    assert rec["converged"] is True and rec["grad_max"] <= 1e-7 and rec["iterations"] >= 1
    assert rec["objective"] == "nll+odir" and rec["method"] == cls.method
    assert rec["nll_after"] < rec["nll_before"] - 0.05
    # A temperature cannot remove a class-wise bias; these methods can, also on held-out data.
    temperature = TemperatureScaling().fit(fit_logits, fit_labels)
    assert nll(cal.transform(held_logits), held_labels) < nll(temperature.transform(held_logits), held_labels)
    assert nll(cal.transform(held_logits), held_labels) < nll(held_logits, held_labels) - 0.05
    out = cal.transform(held_logits)
    assert out.dtype == torch.float32 and out.shape == held_logits.shape


def test_vector_scaling_learns_the_bias_back(synthetic) -> None:
    logits, labels = synthetic(20_000, 5, 1.0, seed=1, bias=BIAS)
    cal = VectorScaling(mu=0.0).fit(logits, labels)
    w, b = cal.weight, cal.bias
    # softmax is shift-invariant: compare the bias up to a constant
    assert torch.allclose(w, torch.ones(5, dtype=torch.float64), atol=0.05)
    assert torch.allclose(b - b.mean(), -(BIAS - BIAS.mean()).double(), atol=0.1)


def test_odir_penalty_by_hand() -> None:
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    # off-diagonal squares: 4 + 9 + 16 + 36 + 49 + 64 = 178 over C(C-1) = 6
    # intercept: 1 + 4 + 9 = 14 over C = 3
    assert float(odir_penalty(w, b, lam=0.3, mu=0.0)) == pytest.approx(0.3 * 178 / 6, abs=1e-12)
    assert float(odir_penalty(w, b, lam=0.0, mu=0.5)) == pytest.approx(0.5 * 14 / 3, abs=1e-12)
    assert float(odir_penalty(w, b, lam=0.3, mu=0.5)) == pytest.approx(
        0.3 * 178 / 6 + 0.5 * 14 / 3, abs=1e-12
    )
    # the diagonal is free; a vector weight has no off-diagonal
    assert float(odir_penalty(torch.diag(torch.tensor([5.0, 6.0, 7.0])), torch.zeros(3), 10.0, 10.0)) == 0.0
    assert float(odir_penalty(torch.ones(3), b, lam=10.0, mu=0.5)) == pytest.approx(0.5 * 14 / 3, abs=1e-12)


def test_the_fit_minimises_the_documented_loss(synthetic) -> None:
    logits, labels = synthetic(800, 4, 1.0, seed=2, bias=BIAS[:4])
    cal = MatrixScaling(lam=0.5, mu=0.2).fit(logits, labels)
    w = cal.weight.clone().requires_grad_()
    b = cal.bias.clone().requires_grad_()
    loss = F.cross_entropy(logits.double() @ w.T + b, labels) + odir_penalty(w, b, 0.5, 0.2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(cal.record["loss"], abs=1e-12)
    assert max(float(w.grad.abs().max()), float(b.grad.abs().max())) <= 1e-7
    assert cal.record["penalty"] == pytest.approx(float(odir_penalty(cal.weight, cal.bias, 0.5, 0.2)))


def test_dirichlet_works_on_log_probabilities(synthetic) -> None:
    logits, labels = synthetic(800, 4, 1.0, seed=3, bias=BIAS[:4])
    cal = DirichletCalibration().fit(logits, labels)
    expected = torch.log_softmax(logits.double(), 1) @ cal.weight.T + cal.bias
    assert torch.allclose(cal.transform(logits), expected.float(), atol=1e-5)
    # shifting every logit of a row changes nothing for Dirichlet (it sees log p)
    assert torch.allclose(cal.transform(logits + 7.0), cal.transform(logits), atol=1e-5)


def test_non_convergence_is_recorded_and_warned(synthetic) -> None:
    logits, labels = synthetic(800, 4, 1.0, seed=4, bias=BIAS[:4])
    with pytest.warns(
        CalibrationConvergenceWarning, match=r"MatrixScaling did not converge.*increase max_iter"
    ):
        cal = MatrixScaling(max_iter=2).fit(logits, labels)
    assert cal.record["converged"] is False and cal.record["iterations"] <= 2
