"""The :class:`Calibrator` base class: input checks at the boundary, the fit record, save/load hooks.

A calibrator maps the logits ``z`` of a trained model to calibrated logits. It is fitted on the held-out
**val** split -- never on test -- and every subclass works in float64 internally:

* ``fit(logits, labels)`` validates the input (shapes, NaN/inf, labels in range, probabilities passed as
  logits, enough samples), fits, and fills :attr:`Calibrator.record` with what was fitted and how well;
* ``transform(logits)`` returns calibrated logits as float32 on the input's device. Scaling methods
  (temperature, vector, matrix, Dirichlet) return logits; the non-parametric methods (histogram binning,
  isotonic regression) return log-probabilities, which are valid logits (``softmax(log p) = p``).

With ``from_probs=True`` the inputs are probabilities and every method works on ``log p`` (clamped to
float32's smallest normal number, ``1.2e-38``, first), which is a valid logit vector of the same distribution.
"""

from __future__ import annotations

import abc
import math
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from calikd.errors import ConfigError
from calikd.metrics import (
    check_logits_labels,
    expected_calibration_error,
    looks_like_probabilities,
    negative_log_likelihood,
)

__all__ = [
    "CalibrationConvergenceWarning",
    "CalibrationOnTestWarning",
    "CalibrationWarning",
    "Calibrator",
    "NotFittedError",
    "to_log_space",
]

_C = TypeVar("_C", bound="Calibrator")

#: Probabilities are clamped to this before the log (float32's smallest normal number).
PROB_FLOOR = float(torch.finfo(torch.float32).tiny)


class CalibrationWarning(UserWarning):
    """Something about a calibration fit deserves attention (a clamped temperature, for instance)."""


class CalibrationOnTestWarning(CalibrationWarning):
    """A calibrator was fitted on the test split: its test metrics are then optimistically biased."""


class CalibrationConvergenceWarning(CalibrationWarning):
    """An iterative fit stopped before meeting its tolerance."""


class NotFittedError(ConfigError):
    """``transform`` (or ``save``) was called before ``fit``."""


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def to_log_space(
    values: torch.Tensor, *, from_probs: bool, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``values`` as ``dtype`` logits: unchanged for logits, ``log(max(p, 1.2e-38))`` for probabilities."""
    x = values.to(dtype)
    return x.clamp_min(PROB_FLOOR).log() if from_probs else x


def _check_values(values: Any, *, from_probs: bool, what: str = "logits") -> None:
    """Shape, finiteness and logits-vs-probabilities checks shared by ``fit`` and ``transform``."""
    if not isinstance(values, torch.Tensor):
        raise ConfigError(f"{what} must be a torch tensor; got {type(values).__name__}")
    if values.ndim != 2 or values.shape[1] < 2:
        raise ConfigError(f"{what} must have shape (N, C) with C >= 2 classes; got {tuple(values.shape)}")
    if not values.dtype.is_floating_point:
        raise ConfigError(f"{what} must be floating point; got dtype {values.dtype}")
    if values.shape[0] == 0:
        return
    if not torch.isfinite(values).all():
        raise ConfigError(f"{what} contain NaN or inf", hint="check the model's outputs (diverged training?)")
    if from_probs:
        v, tol = values.double(), max(1e-3, 4 * torch.finfo(values.dtype).eps)  # as calikd.metrics
        if not (((v >= 0) & (v <= 1)).all() and bool(((v.sum(1) - 1).abs() <= tol).all())):
            raise ConfigError(
                "from_probs=True but these are not probabilities (rows in [0, 1] summing to 1)",
                hint="pass logits with from_probs=False",
            )
    elif looks_like_probabilities(values):
        raise ConfigError(
            "these look like probabilities; pass logits or use `from_probs=True`",
            hint="every row lies in [0, 1] and sums to 1; calibrators work on logits, and with "
            "from_probs=True on log(p)",
        )


class Calibrator(abc.ABC):
    """Base class of post-hoc calibrators with one sklearn-like API (``fit`` / ``transform``).

    Subclasses set :attr:`method` (through :func:`calikd.calibration.register_calibrator`) and implement
    ``_fit`` / ``_transform`` on float64 log-space inputs, plus the parameter hooks used by save/load.
    """

    method: ClassVar[str] = ""
    #: ``fit`` refuses data with fewer samples than this of any class (0: no per-class requirement).
    min_samples_per_class: ClassVar[int] = 0
    #: ``fit`` refuses data with fewer samples than this in total.
    min_samples: ClassVar[int] = 2

    def __init__(self) -> None:
        self.num_classes: int | None = None
        self.from_probs: bool = False
        self.record: dict[str, Any] = {}
        self.source: Path | None = None  # the file it was loaded from (named in errors)
        self._fitted = False

    # ----------------------------------------------------------------------------------- subclass hooks
    def hyperparams(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready): ``type(self)(**self.hyperparams())`` copies."""
        return {}

    @abc.abstractmethod
    def _fit(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Fit on float64 CPU logits ``z`` ``(N, C)`` and int64 ``labels``; return extra record entries."""

    @abc.abstractmethod
    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (or log-probabilities) of ``z``, same dtype and device as ``z``."""

    def _params(self) -> dict[str, float]:
        """Scalar fitted parameters, stored in the JSON file."""
        return {}

    def _set_params(self, params: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore the scalar parameters from a loaded JSON file (already type-checked as numbers)."""

    def _tensors(self) -> dict[str, torch.Tensor]:
        """Tensor parameters (CPU float64/int64), stored in the ``.safetensors`` file next to the JSON."""
        return {}

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:  # noqa: B027 (optional hook)
        """Restore tensor parameters; raise ``ValueError`` naming the problem if they are inconsistent."""

    def _expected_shapes(self, num_classes: int) -> dict[str, tuple[int, ...] | None]:
        """Shape of each tensor parameter for ``num_classes`` (``None``: variable length)."""
        return {}

    def _check_enough(self, counts: torch.Tensor) -> None:
        """Raise :class:`ConfigError` when ``counts`` (samples per class) are too few for this method."""
        n, name = int(counts.sum()), type(self).__name__
        if n < self.min_samples:
            raise ConfigError(
                f"{name} needs at least {self.min_samples} samples to fit; got {n}",
                hint="fit on a larger held-out val split",
            )
        need = self.min_samples_per_class
        short = [(c, int(k)) for c, k in enumerate(counts.tolist()) if k < need]
        if short:
            listed = ", ".join(f"class {c}: {k}" for c, k in short[:5]) + (" ..." if len(short) > 5 else "")
            raise ConfigError(
                f"{name} needs at least {need} samples of every class to fit its "
                f"{self._n_parameters(len(counts))} parameters; {len(short)} of {len(counts)} classes have "
                f"fewer ({listed}) in the {n} samples given",
                hint="use a larger (stratified) val split, or TemperatureScaling, which has one parameter",
            )

    def _n_parameters(self, num_classes: int) -> int:
        return sum(math.prod(s) for s in self._expected_shapes(num_classes).values() if s is not None) or 1

    # ----------------------------------------------------------------------------------------- public API
    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has set the parameters."""
        return self._fitted

    def fit(
        self: _C,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        from_probs: bool = False,
        split: str | None = None,
    ) -> _C:
        """Fit on held-out ``logits`` ``(N, C)`` and integer ``labels`` ``(N,)``; returns ``self``.

        ``split`` names where the data comes from (recorded); ``"test"`` warns with
        :class:`CalibrationOnTestWarning`. ``from_probs=True``: ``logits`` are probabilities.
        """
        if split is not None and str(split).strip().lower() == "test":
            warnings.warn(
                f"{type(self).__name__} is being fitted on the test split: fit calibration on the held-out "
                "val split, never on test (test metrics of a calibrator fitted on test are optimistically "
                "biased)",
                CalibrationOnTestWarning,
                stacklevel=2,
            )
        _check_values(logits, from_probs=from_probs)
        check_logits_labels(logits, labels, from_probs=from_probs)
        z = to_log_space(logits.detach().cpu(), from_probs=from_probs)
        y = labels.detach().cpu().long()
        num_classes = z.shape[1]
        counts = torch.bincount(y, minlength=num_classes)
        present = torch.nonzero(counts).flatten()
        if len(present) < 2:
            raise ConfigError(
                f"all {len(y)} labels are class {int(present[0])}: a calibrator cannot be fitted on one "
                "class",
                hint="fit on a val split that covers the classes (is the split sorted by class, or a slice "
                "of it?)",
            )
        self._check_enough(counts)
        self._fitted = False
        extra = self._fit(z, y)
        self.num_classes, self.from_probs, self._fitted = num_classes, bool(from_probs), True
        after = self._transform(z)
        record: dict[str, Any] = {
            "method": self.method,
            "hyperparams": self.hyperparams(),
            "params": self._params(),
            "n_samples": len(y),
            "num_classes": num_classes,
            "split": split,
            "from_probs": bool(from_probs),
            "nll_before": negative_log_likelihood(z, y),
            "nll_after": negative_log_likelihood(after, y),
            "ece_before": expected_calibration_error(z, y),
            "ece_after": expected_calibration_error(after, y),
        }
        record.update(extra)
        self.record = _json_ready(record)
        return self

    def transform(self, logits: torch.Tensor, *, from_probs: bool | None = None) -> torch.Tensor:
        """Calibrated logits (log-probabilities for histogram/isotonic) as float32 on the input's device.

        ``from_probs`` defaults to the value used in :meth:`fit`.
        """
        self._require_fitted("transform")
        from_probs = self.from_probs if from_probs is None else from_probs
        _check_values(logits, from_probs=from_probs)
        return self.transform_unchecked(logits, from_probs=from_probs)

    def transform_unchecked(self, logits: torch.Tensor, *, from_probs: bool | None = None) -> torch.Tensor:
        """:meth:`transform` without the checks of the values (NaN/inf, probabilities passed as logits).

        For internal per-batch callers (a distiller calibrating its teacher's logits every step) whose
        logits were checked once already: those checks wait for the device (a host sync) on every call.
        """
        self._require_fitted("transform")
        from_probs = self.from_probs if from_probs is None else from_probs
        if logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"{type(self).__name__} was fitted on {self.num_classes} classes, got {logits.shape[1]}",
                hint="use the calibrator fitted for this model and dataset",
            )
        z = to_log_space(logits.detach(), from_probs=from_probs, dtype=_work_dtype(logits.device))
        return self._transform(z).to(torch.float32)

    def fit_transform(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        from_probs: bool = False,
        split: str | None = None,
    ) -> torch.Tensor:
        """``fit(...)`` then ``transform(logits)``."""
        return self.fit(logits, labels, from_probs=from_probs, split=split).transform(logits)

    def save(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write ``<stem>.json`` (+ ``<stem>.safetensors`` for tensor parameters) atomically; return paths.

        ``path`` is a stem or a ``.json`` path. Nothing is pickled.
        """
        from calikd.calibration.io import save_calibrator

        return save_calibrator(self, path)

    @classmethod
    def load(cls: type[_C], path: str | os.PathLike[str]) -> _C:
        """Load a calibrator saved with :meth:`save` (``Calibrator.load`` dispatches on its ``method``)."""
        from calikd.calibration.io import load_calibrator

        return load_calibrator(path, expected=cls)

    def _require_fitted(self, action: str) -> None:
        if not self._fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet, so it cannot {action}",
                hint="call .fit(val_logits, val_labels) first, or load a saved one with "
                "load_calibrator(path)",
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items())
        state = f"fitted on {self.num_classes} classes" if self._fitted else "not fitted"
        return f"{type(self).__name__}({args})  # {state}"


def _json_ready(value: Any) -> Any:
    """``value`` with tensors/numpy scalars as Python numbers and non-finite floats as ``None``."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _json_ready(value.tolist())
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
