r"""Temperature scaling (Guo et al., 2017): calibrated logits ``z / T`` with one scalar ``T > 0``.

Dividing by ``T`` never changes the argmax, so accuracy is unchanged. ``T`` is bounded to a sane range
``[t_min, t_max] = [0.05, 20]`` by default: outside it a model is so mis-scaled (or its logits so
uninformative) that a single temperature is the wrong fix, so an optimum beyond a bound is clamped to it with
a :class:`CalibrationWarning` and recorded (``record["clamped"]``).

Exact NLL fit
-------------
With ``beta = 1/T``, ``p_i = softmax(beta z_i)`` and ``y_i`` the label of sample ``i``::

    NLL(beta)   = mean_i [ logsumexp(beta z_i) - beta z_{i,y_i} ]
    NLL'(beta)  = mean_i [ E_{p_i}[z] - z_{i,y_i} ]         (expected minus true-class logit)
    NLL''(beta) = mean_i Var_{p_i}[z]  >= 0

so the NLL is convex in ``beta`` and its minimiser is the root of ``NLL'``. At ``beta = 0`` (``T = inf``)
``NLL'(0) = mean_i (mean_c z_ic - z_iy)``; as ``beta -> inf`` (``T -> 0``)
``NLL' -> mean_i (max_c z_ic - z_iy) >= 0``. A finite ``T`` therefore exists iff ``NLL'(0) < 0`` (the logits
rank the true class better than chance) and some prediction is wrong. When it does not, or the labels are
degenerate (one class, or every prediction wrong), :class:`ConfigError` says why.

The root is found in float64 by a safeguarded Newton method (Newton steps inside a sign-change bracket,
bisection when a Newton step would leave the bracket or converges too slowly, as in Numerical Recipes'
``rtsafe``), with the closed-form derivatives above computed on row-max-centred logits (so ``exp`` never
overflows and the variance does not cancel). It stops when a step changes ``T`` by at most ``xtol = 1e-6``;
Newton converges quadratically, so the final ``T`` is accurate to far better than ``xtol``.

Other objectives
----------------
``"ece"`` (top-label ECE, equal-width bins), ``"ace"`` (top-label ECE with equal-mass bins: the adaptive
calibration error) and ``"brier"`` are not convex in ``T``, and the ECEs are piecewise constant in ``T`` (a
sample's bin only changes at discrete temperatures), so no derivative-based method applies. They are
minimised by a grid of ``grid_size = 200`` points uniform in ``log T`` over ``[t_min, t_max]`` followed by a
golden-section search on the bracket around the best grid point (to a ``T``-width of ``xtol``); the best value
seen is returned, ties going to the first found.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from calikd import metrics
from calikd.calibration.base import CalibrationConvergenceWarning, CalibrationWarning, Calibrator
from calikd.calibration.registry import register_calibrator
from calikd.errors import ConfigError

__all__ = [
    "OBJECTIVES",
    "TemperatureFit",
    "TemperatureScaling",
    "fit_temperature_grid",
    "fit_temperature_nll",
    "nll_derivatives",
]

OBJECTIVES = ("nll", "ece", "ace", "brier")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_DEGENERATE_HINT = (
    "check that the labels are aligned with the logits (same order and class indices), that the model is "
    "trained, and fit on the held-out val split"
)


@dataclass(frozen=True)
class TemperatureFit:
    """Result of a temperature fit: ``temperature`` and how it was found."""

    temperature: float
    objective: str
    value: float  #: objective at ``temperature``
    iterations: int  #: Newton/bisection steps (NLL) or objective evaluations (grid objectives)
    evaluations: int  #: passes over the data
    converged: bool
    clamped: str | None  #: ``"t_min"`` / ``"t_max"`` when the optimum lies beyond that bound, else ``None``
    gradient: float | None = None  #: dNLL/dbeta at the last evaluated point, within xtol of T (NLL only)


def _centre(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 logits minus their row max (so every row's max is exactly 0) and the true-class entries."""
    z = logits.detach().to(torch.float64)
    zc = z - z.max(dim=1, keepdim=True).values
    return zc, zc.gather(1, labels.long().to(zc.device).unsqueeze(1)).squeeze(1)


class _Derivatives:
    """``beta -> (NLL, NLL', NLL'')`` on centred logits ``zc`` (row max 0) and true-class entries ``zy``.

    One ``exp`` pass per call into a reused buffer, then the row sums ``sum_c e_c * [1, z_c, z_c^2]``.
    """

    def __init__(self, zc: torch.Tensor, zy: torch.Tensor) -> None:
        self.zc, self.zy = zc, zy
        self.buffer = torch.empty_like(zc)

    def __call__(self, beta: float) -> tuple[float, float, float]:
        e = torch.mul(self.zc, beta, out=self.buffer).exp_()  # in (0, 1], max exactly 1: no overflow
        s = e.sum(1)
        m1 = e.mul_(self.zc).sum(1).div_(s)  # E_p[z]
        m2 = e.mul_(self.zc).sum(1).div_(s)  # E_p[z^2]
        f = (s.log_() - self.zy * beta).mean()
        g = (m1 - self.zy).mean()
        h = (m2 - m1 * m1).clamp_min_(0.0).mean()
        return float(f), float(g), float(h)


def nll_derivatives(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> tuple[float, float, float]:
    """``(NLL, dNLL/dbeta, d2NLL/dbeta2)`` of ``softmax(beta * logits)``: float64, closed form (module)."""
    return _Derivatives(*_centre(logits, labels))(float(beta))


def _check_determinable(zc: torch.Tensor, zy: torch.Tensor) -> None:
    """Raise :class:`ConfigError` when no finite positive temperature minimises the NLL (see module)."""
    n = zc.shape[0]
    correct = zy == 0
    if bool(correct.all()):
        if bool((zc == 0).all()):
            raise ConfigError(
                f"every one of the {n} logit rows is constant across classes: the temperature has no effect",
                hint=_DEGENERATE_HINT,
            )
        raise ConfigError(
            f"every one of the {n} predictions is correct (the true class has the largest logit in every "
            "row), so the NLL keeps decreasing as T -> 0 and no temperature minimises it",
            hint="fit on a held-out val split on which the model makes some mistakes (not on the training "
            "data), or on more samples",
        )
    if not bool(correct.any()):
        raise ConfigError(
            f"every one of the {n} predictions is wrong (accuracy 0): a temperature cannot calibrate such "
            "logits, and the fitted value would be meaningless",
            hint=_DEGENERATE_HINT,
        )
    g0 = float((zc.mean(1) - zy).mean())
    if g0 >= 0:
        raise ConfigError(
            "the logits rank the true class no better than chance (the true-class logit is on average not "
            f"above the row mean; dNLL/dbeta = {g0:.3g} >= 0 at T = inf), so the NLL keeps decreasing as "
            "T -> inf",
            hint=_DEGENERATE_HINT,
        )


#: The widest temperatures calikd fits or applies: far beyond any useful one, and well inside the range where
#: ``z / T`` keeps the order of float32 logits (a T of 1e300 underflows them to ties and changes the argmax).
T_LIMITS = (1e-4, 1e4)


def _check_bounds(t_min: float, t_max: float) -> None:
    lo, hi = T_LIMITS
    finite = math.isfinite(t_min) and math.isfinite(t_max)
    if not (finite and 0 < t_min < t_max and lo <= t_min and t_max <= hi):
        raise ConfigError(
            f"temperature bounds must satisfy 0 < t_min < t_max < inf, within [{lo:g}, {hi:g}]; got "
            f"t_min={t_min}, t_max={t_max}"
        )


def _clamp_warning(bound: str, t: float, slope: float) -> None:
    side = "below" if bound == "t_min" else "above"
    meaning = "overconfident" if bound == "t_max" else "underconfident"
    warnings.warn(
        f"the NLL-optimal temperature lies {side} {bound}={t:g} (dNLL/dbeta = {slope:.3g} there), so it was "
        f"clamped to {t:g}: the logits are extremely {meaning}; widen [t_min, t_max] if this is intended",
        CalibrationWarning,
        stacklevel=4,
    )


def fit_temperature_nll(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    t_min: float = 0.05,
    t_max: float = 20.0,
    xtol: float = 1e-6,
    max_iter: int = 100,
) -> TemperatureFit:
    """The NLL-optimal temperature in ``[t_min, t_max]``, exact to ``|dT| <= xtol`` (see the module).

    ``logits`` ``(N, C)`` and ``labels`` ``(N,)`` are assumed valid (``TemperatureScaling.fit`` checks them);
    raises :class:`ConfigError` when the data cannot determine ``T``.
    """
    _check_bounds(t_min, t_max)
    zc, zy = _centre(logits, labels)
    _check_determinable(zc, zy)
    derivatives = _Derivatives(zc, zy)
    lo, hi = 1.0 / t_max, 1.0 / t_min  # the bracket in beta; a bound's sign is checked only when needed
    lo_checked = hi_checked = False
    beta = min(max(1.0, lo), hi)
    f, g, h = derivatives(beta)
    evals, iterations, converged, g_prev = 1, 0, g == 0.0, math.inf
    while not converged and iterations < max_iter:
        iterations += 1
        if g < 0:  # the NLL still decreases with beta: the root lies above beta
            lo, lo_checked = beta, True
        else:
            hi, hi_checked = beta, True
        newton = beta - g / h if h > 0 else math.nan
        stalled = abs(g) >= abs(g_prev) and (g < 0) == (g_prev < 0)  # no progress on the same side
        if lo < newton < hi and not stalled:
            new = newton
        elif not (hi_checked if g < 0 else lo_checked):
            # Newton leaves the bracket towards a bound whose sign is unknown: evaluate the bound.
            bound = hi if g < 0 else lo
            fb, gb, hb = derivatives(bound)
            evals += 1
            if (gb <= 0) if g < 0 else (gb >= 0):  # the optimum lies at or beyond the bound: clamp
                name = "t_min" if g < 0 else "t_max"
                if gb == 0.0:  # exactly at the bound: nothing was clamped
                    return TemperatureFit(1.0 / bound, "nll", fb, iterations, evals, True, None, gb)
                _clamp_warning(name, 1.0 / bound, gb)
                return TemperatureFit(1.0 / bound, "nll", fb, iterations, evals, True, name, gb)
            g_prev, (beta, f, g, h) = g, (bound, fb, gb, hb)  # a checked bracket; go on from the bound
            continue
        else:  # Newton leaves the checked bracket, or stalled: bisect
            new = 0.5 * (lo + hi)
        step_t = abs(1.0 / new - 1.0 / beta)
        g_prev, beta = g, new
        if step_t <= xtol or new in (lo, hi):
            # After a Newton step this small the error is of order step^2; a bisection step bounds the error.
            converged = True
            break
        f, g, h = derivatives(beta)
        evals += 1
        converged = g == 0.0
    if not converged:
        warnings.warn(
            f"the temperature fit did not reach |dT| <= {xtol:g} in {max_iter} iterations "
            f"(T = {1 / beta:.8g}, dNLL/dbeta = {g:.3g}); increase max_iter",
            CalibrationConvergenceWarning,
            stacklevel=3,
        )
    return TemperatureFit(1.0 / beta, "nll", f, iterations, evals, converged, None, g)


def fit_temperature_grid(
    objective: Callable[[float], float],
    *,
    t_min: float = 0.05,
    t_max: float = 20.0,
    grid_size: int = 200,
    xtol: float = 1e-6,
    name: str = "objective",
) -> TemperatureFit:
    """Minimise ``objective(T)`` on ``[t_min, t_max]``: log-uniform grid, then golden section (see module)."""
    _check_bounds(t_min, t_max)
    if grid_size < 3:
        raise ConfigError(f"grid_size must be >= 3; got {grid_size}")
    grid = torch.linspace(math.log(t_min), math.log(t_max), grid_size, dtype=torch.float64).tolist()
    values = [objective(math.exp(u)) for u in grid]
    k = min(range(grid_size), key=values.__getitem__)
    best_u, best = grid[k], values[k]
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid_size - 1)]
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = objective(math.exp(c)), objective(math.exp(d))
    evals = grid_size + 2
    while math.exp(b) - math.exp(a) > xtol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = objective(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = objective(math.exp(d))
        evals += 1
        for u, v in ((c, fc), (d, fd)):
            if v < best:
                best_u, best = u, v
    t = min(max(math.exp(best_u), t_min), t_max)
    clamped = "t_min" if best_u == grid[0] else "t_max" if best_u == grid[-1] else None
    return TemperatureFit(t, name, best, evals, evals, True, clamped)


def _objective_fn(name: str, zc: torch.Tensor, labels: torch.Tensor, n_bins: int) -> Callable[[float], float]:
    """``T -> objective(logits / T)`` using :mod:`calikd.metrics` (imported lazily)."""
    if name == "ece":
        return lambda t: metrics.expected_calibration_error(zc / t, labels, n_bins=n_bins, binning="width")
    if name == "ace":
        return lambda t: metrics.expected_calibration_error(zc / t, labels, n_bins=n_bins, binning="mass")
    if name == "brier":
        return lambda t: metrics.brier_score(zc / t, labels)
    raise ConfigError(f"unknown objective '{name}'; valid: {', '.join(OBJECTIVES)}")


@register_calibrator("temperature")
class TemperatureScaling(Calibrator):
    """``z / T`` with ``T`` minimising ``objective`` on the val split, bounded to ``[t_min, t_max]``.

    ``objective="nll"`` is solved exactly (safeguarded Newton in ``beta = 1/T``); ``"ece"``, ``"ace"`` and
    ``"brier"`` by grid + golden section (``n_bins`` bins for the ECEs). See the module docstring.
    """

    def __init__(
        self,
        objective: str = "nll",
        t_min: float = 0.05,
        t_max: float = 20.0,
        *,
        n_bins: int = 15,
        grid_size: int = 200,
        xtol: float = 1e-6,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{objective}'; valid: {', '.join(OBJECTIVES)}")
        t_min, t_max = float(t_min), float(t_max)
        _check_bounds(t_min, t_max)
        if int(n_bins) < 1 or int(grid_size) < 3 or not (float(xtol) > 0) or int(max_iter) < 1:
            raise ConfigError(
                f"need n_bins >= 1, grid_size >= 3, xtol > 0, max_iter >= 1; got n_bins={n_bins}, "
                f"grid_size={grid_size}, xtol={xtol}, max_iter={max_iter}"
            )
        self.objective, self.t_min, self.t_max = objective, t_min, t_max
        self.n_bins, self.grid_size, self.xtol, self.max_iter = (
            int(n_bins),
            int(grid_size),
            float(xtol),
            int(max_iter),
        )
        self.temperature: float | None = None

    def hyperparams(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "n_bins": self.n_bins,
            "grid_size": self.grid_size,
            "xtol": self.xtol,
            "max_iter": self.max_iter,
        }

    def _fit(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        bounds = {"t_min": self.t_min, "t_max": self.t_max, "xtol": self.xtol}
        if self.objective == "nll":
            fit = fit_temperature_nll(z, labels, max_iter=self.max_iter, **bounds)
            before = None
        else:
            zc, zy = _centre(z, labels)
            _check_determinable(zc, zy)
            fn = _objective_fn(self.objective, zc, labels, self.n_bins)
            before = fn(1.0)
            fit = fit_temperature_grid(fn, grid_size=self.grid_size, name=self.objective, **bounds)
        self.temperature = fit.temperature
        out = {
            "objective": fit.objective,
            "objective_after": fit.value,
            "iterations": fit.iterations,
            "evaluations": fit.evaluations,
            "converged": fit.converged,
            "clamped": fit.clamped,
        }
        if before is not None:
            out["objective_before"] = before
        if fit.gradient is not None:
            out["dnll_dbeta"] = fit.gradient
        return out

    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        assert self.temperature is not None
        if not self.t_min <= self.temperature <= self.t_max:  # set by hand since the fit or the load
            source = f"calibrator '{self.source}'" if self.source else "this temperature calibrator"
            raise ConfigError(
                f"{source} has temperature {self.temperature!r}, outside its fitting range "
                f"[t_min={self.t_min:g}, t_max={self.t_max:g}]",
                hint="refit it with `calikd calibrate`",
            )
        return z / self.temperature

    def _params(self) -> dict[str, float]:
        return {"temperature": float(self.temperature)} if self.temperature is not None else {}

    def _set_params(self, params: dict[str, Any]) -> None:
        t = params.get("temperature")
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ValueError(f"'temperature' must be a positive finite number; got {t!r}")
        if not self.t_min <= t <= self.t_max:
            raise ValueError(
                f"'temperature' {t!r} is outside the range its fit allows [t_min={self.t_min:g}, "
                f"t_max={self.t_max:g}]: the file was not written by a fit (refit it with `calikd calibrate`)"
            )
        self.temperature = float(t)
