"""Temperature scaling: the NLL fit is exact, its derivatives are right, and the other objectives work."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from calikd.calibration import (
    CalibrationWarning,
    TemperatureScaling,
    fit_temperature_grid,
    fit_temperature_nll,
    nll_derivatives,
)


def reference_optimum(
    logits: torch.Tensor, labels: torch.Tensor, t_min: float = 0.05, t_max: float = 20.0
) -> float:
    """The NLL-optimal T by brute force, independent of the fit: a dense float64 grid over log T, then golden
    section on the best bracket (plain cross-entropy, no derivatives)."""
    z = logits.double()

    def nll(u: float) -> float:
        return float(F.cross_entropy(z / math.exp(u), labels))

    grid = torch.linspace(math.log(t_min), math.log(t_max), 801, dtype=torch.float64).tolist()
    values = [nll(u) for u in grid]
    k = min(range(len(grid)), key=values.__getitem__)
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    r = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > 1e-10:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = nll(d)
    return math.exp(0.5 * (a + b))


@pytest.mark.parametrize("t_true", [0.5, 1.5, 3.0])
def test_nll_fit_matches_an_independent_optimum(t_true: float, synthetic) -> None:
    logits, labels = synthetic(3000, 10, t_true, seed=1)
    cal = TemperatureScaling().fit(logits, labels, split="val")
    t = cal.temperature
    assert abs(t - reference_optimum(logits, labels)) < 1e-4
    record = cal.record
    assert record["converged"] is True and record["clamped"] is None
    assert 1 <= record["iterations"] <= 20
    assert record["params"] == {"temperature": t}
    assert record["objective"] == "nll" and record["method"] == "temperature"
    assert record["n_samples"] == 3000 and record["num_classes"] == 10 and record["split"] == "val"
    assert record["nll_after"] <= record["nll_before"]
    assert abs(record["dnll_dbeta"]) < 1e-6


@pytest.mark.parametrize("t_true", [0.5, 1.5, 3.0])
def test_large_samples_recover_the_true_temperature(t_true: float, synthetic) -> None:
    logits, labels = synthetic(20_000, 10, t_true, seed=2)
    t = fit_temperature_nll(logits, labels).temperature
    assert t == pytest.approx(t_true, rel=0.05)


def test_closed_form_derivatives_match_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, 7, (50,), generator=gen)
    for beta0 in (0.05, 0.7, 1.0, 3.0):
        beta = torch.tensor(beta0, dtype=torch.float64, requires_grad=True)
        nll = F.cross_entropy(logits * beta, labels)
        (grad,) = torch.autograd.grad(nll, beta, create_graph=True)
        (hess,) = torch.autograd.grad(grad, beta)
        f, g, h = nll_derivatives(logits, labels, beta0)
        assert f == pytest.approx(float(nll.detach()), rel=1e-12, abs=1e-12)
        assert g == pytest.approx(float(grad.detach()), rel=1e-10, abs=1e-12)
        assert h == pytest.approx(float(hess), rel=1e-10, abs=1e-12)


def test_derivative_by_hand_on_one_sample() -> None:
    # z = (0, 1), label 0, beta = 1: p = (1, e) / (1 + e); dNLL/dbeta = E_p[z] - z_y = e / (1 + e)
    logits, labels = torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    f, g, h = nll_derivatives(logits, labels, 1.0)
    p1 = math.e / (1 + math.e)
    assert f == pytest.approx(math.log(1 + math.e), abs=1e-15)
    assert g == pytest.approx(p1, abs=1e-15)
    assert h == pytest.approx(p1 * (1 - p1), abs=1e-15)  # Var of a Bernoulli on {0, 1}


def test_scaling_keeps_argmax_lowers_nll_and_is_deterministic(synthetic) -> None:
    logits, labels = synthetic(2000, 10, 2.0, seed=3)
    a = TemperatureScaling().fit(logits, labels)
    b = TemperatureScaling().fit(logits.clone(), labels.clone())
    assert a.temperature == b.temperature and a.record == b.record
    out = a.transform(logits)
    assert out.dtype == torch.float32 and out.device == logits.device
    assert torch.equal(out.argmax(1), logits.argmax(1))
    assert torch.allclose(out, (logits.double() / a.temperature).float())
    assert F.cross_entropy(out.double(), labels) <= F.cross_entropy(logits.double(), labels)
    assert torch.equal(a.fit_transform(logits, labels), out)


def test_float64_input_gives_float32_output(synthetic) -> None:
    logits, labels = synthetic(500, 5, 1.5, seed=4)
    cal = TemperatureScaling().fit(logits.double(), labels)
    assert cal.transform(logits.double()).dtype == torch.float32


def test_probabilities_fit_on_log_p(synthetic) -> None:
    logits, labels = synthetic(2000, 10, 1.5, seed=5)
    probs = torch.softmax(logits.double(), dim=1)
    on_logits = TemperatureScaling().fit(logits.double(), labels)
    on_probs = TemperatureScaling().fit(probs, labels, from_probs=True)
    assert on_probs.temperature == pytest.approx(on_logits.temperature, abs=1e-9)
    assert on_probs.record["from_probs"] is True
    out = on_probs.transform(probs)  # from_probs defaults to the fit's
    assert torch.allclose(
        torch.softmax(out.double(), 1), torch.softmax(on_logits.transform(logits), 1).double()
    )


@pytest.mark.parametrize(
    ("t_true", "bounds", "clamped"), [(3.0, (0.05, 1.2), "t_max"), (0.5, (2.0, 20.0), "t_min")]
)
def test_an_optimum_outside_the_bounds_is_clamped_with_a_warning(t_true, bounds, clamped, synthetic) -> None:
    logits, labels = synthetic(2000, 10, t_true, seed=6)
    with pytest.warns(
        CalibrationWarning, match=f"clamped to {bounds[1] if clamped == 't_max' else bounds[0]:g}"
    ):
        cal = TemperatureScaling(t_min=bounds[0], t_max=bounds[1]).fit(logits, labels)
    assert cal.record["clamped"] == clamped
    assert cal.temperature == pytest.approx(bounds[1] if clamped == "t_max" else bounds[0])


def test_no_warning_inside_the_bounds(synthetic) -> None:
    logits, labels = synthetic(2000, 10, 1.5, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaling().fit(logits, labels, split="val")


def test_grid_search_finds_the_minimum_of_a_known_function() -> None:
    calls: list[float] = []

    def objective(t: float) -> float:
        calls.append(t)
        return (math.log(t) - math.log(2.345)) ** 2

    fit = fit_temperature_grid(objective, grid_size=50)
    assert fit.temperature == pytest.approx(2.345, abs=1e-5)
    assert fit.converged and fit.evaluations == len(calls)


@pytest.mark.parametrize("objective", ["ece", "ace", "brier"])
def test_other_objectives_do_not_get_worse_than_a_coarse_scan(objective: str, synthetic) -> None:
    from calikd import metrics

    logits, labels = synthetic(1500, 10, 2.0, seed=8)
    cal = TemperatureScaling(objective=objective, grid_size=60).fit(logits, labels)
    rec = cal.record
    assert rec["objective"] == objective and rec["converged"] is True
    assert rec["objective_after"] <= rec["objective_before"]

    def value(t: float) -> float:
        z = logits.double() / t
        if objective == "brier":
            return metrics.brier_score(z, labels)
        binning = "width" if objective == "ece" else "mass"
        return metrics.expected_calibration_error(z, labels, n_bins=15, binning=binning)

    assert value(cal.temperature) == pytest.approx(rec["objective_after"], abs=1e-12)
    scan = [value(math.exp(u)) for u in torch.linspace(math.log(0.05), math.log(20.0), 40).tolist()]
    assert rec["objective_after"] <= min(scan) + 1e-12
    assert 1.0 < cal.temperature < 4.0  # overconfident logits (T_true = 2) are softened
