r"""Vector scaling, matrix scaling and Dirichlet calibration (Guo et al., 2017; Kull et al., 2019).

All three are multinomial logistic regressions on a feature vector ``x`` of each sample::

    vector scaling:   q = softmax(w * z + b)          w, b in R^C       (x = z, the logits)
    matrix scaling:   q = softmax(W z + b)            W in R^{CxC}
    Dirichlet:        q = softmax(W log p + b)        p = softmax(z)    (matrix scaling on log-probabilities)

fitted by minimising the mean NLL plus the ODIR penalty (Off-Diagonal and Intercept Regularisation,
Kull et al. 2019), normalised by the number of entries so that the defaults do not depend on ``C``::

    loss = mean_i NLL_i + lam / (C (C - 1)) * sum_{i != j} W_ij^2 + mu / C * sum_j b_j^2

The diagonal is not penalised (vector scaling has no off-diagonal, so only ``mu`` applies). The defaults
``lam = mu = 0.01`` are a mild regularisation that keeps the fit bounded when the val split is nearly
separable; for the best results choose them by cross-validation on the val split (Kull et al. search
``1e-5 .. 1e6``).

The loss is convex in ``(W, b)``. It is minimised from the identity map (``W = I``, ``b = 0``: the
uncalibrated model) by full-batch L-BFGS with a strong-Wolfe line search in float64, until the largest
absolute gradient entry of the loss above (in ``W, b``) is ``<= tol`` (``1e-7``) or ``max_iter`` iterations;
``record["converged"]`` says which, and a :class:`CalibrationConvergenceWarning` is raised when the tolerance
was not met.

Conditioning (none of this changes the optimum):

* L-BFGS runs on an exact linear reparametrisation: centred and whitened features ``x' = (x - m) A`` with
  ``A = V diag(lambda)^(-1/2)`` from the feature covariance (vector scaling: centred and scaled per
  feature), ``W = W' A^T``, ``b = b' - W m``. Log-probabilities are strongly correlated (they share
  ``-logsumexp z``) and far from zero-mean, which otherwise makes the problem very ill-conditioned.
* The softmax is unchanged by adding a vector ``u`` to every row of ``W`` (``W_cj += u_j``) or a constant to
  ``b``, so only the penalty fixes those directions, weakly. At the optimum the penalty's derivative along
  them vanishes, i.e. every column's off-diagonal sum and the sum of ``b`` are zero (for ``lam, mu > 0``),
  so the fit adds the gauge term ``mean_j (var(x_j) * (sum_{i != j} W_ij / (C - 1))^2) + mean(b)^2``, which
  is zero with zero gradient there: the optimum is the same and the flat directions become well curved.
  (With ``lam = 0`` or ``mu = 0`` the optimum is not unique and this picks the representative with zero
  sums.)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from calikd.calibration.base import CalibrationConvergenceWarning, Calibrator
from calikd.calibration.registry import register_calibrator
from calikd.errors import ConfigError

__all__ = ["DirichletCalibration", "MatrixScaling", "VectorScaling", "odir_penalty"]


def odir_penalty(weight: torch.Tensor, bias: torch.Tensor, lam: float, mu: float) -> torch.Tensor:
    """ODIR: ``lam / (C (C-1)) * sum_{i != j} W_ij^2 + mu / C * sum_j b_j^2`` (1-D ``weight``: no W term)."""
    c = bias.shape[0]
    penalty = mu / c * bias.square().sum()
    if weight.ndim == 2 and c > 1:
        off = weight - torch.diag_embed(torch.diagonal(weight))
        penalty = penalty + lam / (c * (c - 1)) * off.square().sum()
    return penalty


class _Reparam(NamedTuple):
    mean: torch.Tensor  # feature means m
    features: torch.Tensor  # centred, whitened (or scaled) features
    scale: torch.Tensor  # whitening matrix A (W = W' A^T), or per-feature scale s (w = w' / s)
    unwhiten: torch.Tensor | None  # A^{-T}: W' = W A^{-T}
    variance: torch.Tensor  # per-feature variance (weights the gauge term)


class _LinearCalibrator(Calibrator):
    """Shared fit/transform of the three linear calibrators (see the module docstring)."""

    diagonal: ClassVar[bool] = False  # vector scaling: elementwise weight
    on_log_probs: ClassVar[bool] = False  # Dirichlet: features are log-softmax(z)
    min_samples_per_class: ClassVar[int] = 5

    def __init__(
        self, lam: float = 0.01, mu: float = 0.01, *, max_iter: int = 1000, tol: float = 1e-7
    ) -> None:
        super().__init__()
        lam, mu, tol = float(lam), float(mu), float(tol)
        if not (math.isfinite(lam) and lam >= 0 and math.isfinite(mu) and mu >= 0):
            raise ConfigError(f"regularisation strengths must be finite and >= 0; got lam={lam}, mu={mu}")
        if int(max_iter) < 1 or not (tol > 0):
            raise ConfigError(f"need max_iter >= 1 and tol > 0; got max_iter={max_iter}, tol={tol}")
        self.lam, self.mu, self.max_iter, self.tol = lam, mu, int(max_iter), tol
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def hyperparams(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lam": self.lam, "mu": self.mu} if not self.diagonal else {"mu": self.mu}
        return {**out, "max_iter": self.max_iter, "tol": self.tol}

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(z, dim=1) if self.on_log_probs else z

    def _apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(bias, x, weight) if self.diagonal else torch.addmm(bias, x, weight.T)

    def _expected_shapes(self, num_classes: int) -> dict[str, tuple[int, ...] | None]:
        w = (num_classes,) if self.diagonal else (num_classes, num_classes)
        return {"weight": w, "bias": (num_classes,)}

    def _reparametrise(self, x: torch.Tensor) -> _Reparam:
        """Centred and whitened (vector scaling: centred and scaled) features; see the module docstring."""
        m = x.mean(0)
        xc = x - m
        if self.diagonal:
            scale = xc.square().mean(0).sqrt()
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            return _Reparam(m, xc / scale, scale, None, xc.square().mean(0))
        cov = xc.T @ xc / x.shape[0]
        eigvals, eigvecs = torch.linalg.eigh(cov)
        floor = float(eigvals.max()) * 1e-12 or 1.0
        eigvals = eigvals.clamp_min(floor)
        whiten = eigvecs * eigvals.rsqrt()  # x_white = (x - m) @ whiten
        unwhiten = eigvecs * eigvals.sqrt()  # whiten^{-T}
        return _Reparam(m, xc @ whiten, whiten, unwhiten, cov.diagonal().clone())

    def _fit(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        c = z.shape[1]
        x = self._features(z)
        lam = 0.0 if self.diagonal else self.lam
        r = self._reparametrise(x)
        # Identity start: W = I (w = 1), b = 0, i.e. b' = b + W m = m.
        w0 = r.scale.clone() if self.diagonal else r.unwhiten.clone().contiguous()
        w_param = w0.requires_grad_()
        b_param = r.mean.clone().requires_grad_()

        def physical(wp: torch.Tensor, bp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            weight = wp / r.scale if self.diagonal else wp @ r.scale.T
            return weight, bp - (weight * r.mean if self.diagonal else weight @ r.mean)

        def gauge(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            """Zero, with zero gradient, at the optimum (see the module docstring): fixes flat directions."""
            out = bias.mean().square()
            if not self.diagonal:
                off = weight - torch.diag_embed(torch.diagonal(weight))
                out = out + ((off.sum(0) / (c - 1)).square() * r.variance).mean()
            return out

        optimizer = torch.optim.LBFGS(
            [w_param, b_param],
            lr=1.0,
            max_iter=self.max_iter,
            max_eval=self.max_iter * 2,
            tolerance_grad=self.tol * 0.01,
            tolerance_change=1e-15,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            weight, bias = physical(w_param, b_param)
            logits = torch.addcmul(b_param, r.features, w_param) if self.diagonal else r.features @ w_param.T
            if not self.diagonal:
                logits = logits + b_param
            loss = (
                F.cross_entropy(logits, labels)
                + odir_penalty(weight, bias, lam, self.mu)
                + gauge(weight, bias)
            )
            loss.backward()
            return loss

        optimizer.step(closure)
        state = optimizer.state[w_param]
        with torch.no_grad():
            weight, bias = physical(w_param, b_param)
        # Convergence is judged on the documented loss, in the original parameters.
        weight.requires_grad_()
        bias.requires_grad_()
        loss = F.cross_entropy(self._apply(x, weight, bias), labels) + odir_penalty(
            weight, bias, lam, self.mu
        )
        loss.backward()
        grad_max = max(float(weight.grad.abs().max()), float(bias.grad.abs().max()))
        converged = grad_max <= self.tol
        if not converged:
            warnings.warn(
                f"{type(self).__name__} did not converge: max |gradient| = {grad_max:.3g} > tol = "
                f"{self.tol:g} after {state['n_iter']} L-BFGS iterations; increase max_iter or the "
                "regularisation (lam, mu)",
                CalibrationConvergenceWarning,
                stacklevel=4,
            )
        self.weight, self.bias = weight.detach().clone(), bias.detach().clone()
        return {
            "objective": "nll+odir",
            "loss": float(loss.detach()),
            "penalty": float(odir_penalty(self.weight, self.bias, lam, self.mu)),
            "iterations": int(state["n_iter"]),
            "evaluations": int(state["func_evals"]),
            "converged": converged,
            "grad_max": grad_max,
        }

    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        assert self.weight is not None and self.bias is not None
        return self._apply(self._features(z), self.weight.to(z), self.bias.to(z))

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.weight is not None else {}

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.weight = tensors["weight"].to(torch.float64)
        self.bias = tensors["bias"].to(torch.float64)


@register_calibrator("vector")
class VectorScaling(_LinearCalibrator):
    """``softmax(w * z + b)``: a temperature and a bias per class (``mu``: intercept penalty)."""

    diagonal = True
    min_samples_per_class = 2

    def __init__(self, mu: float = 0.01, *, max_iter: int = 1000, tol: float = 1e-7) -> None:
        super().__init__(0.0, mu, max_iter=max_iter, tol=tol)


@register_calibrator("matrix")
class MatrixScaling(_LinearCalibrator):
    """``softmax(W z + b)`` with ODIR (``lam``: off-diagonal, ``mu``: intercept); see the module docstring."""


@register_calibrator("dirichlet")
class DirichletCalibration(_LinearCalibrator):
    """``softmax(W log p + b)``, ``p = softmax(z)``, with ODIR (Kull et al., 2019)."""

    on_log_probs = True
