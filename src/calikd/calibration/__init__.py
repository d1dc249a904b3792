"""Post-hoc calibrators with one sklearn-like API, fitted on the held-out val split (never on test).

>>> cal = create_calibrator("temperature").fit(val_logits, val_labels, split="val")
>>> cal.record["params"]["temperature"], cal.record["nll_after"]
>>> test_logits_calibrated = cal.transform(test_logits)
>>> cal.save("runs/x/calibrator")            # runs/x/calibrator.json (+ .safetensors); never pickled
>>> cal = load_calibrator("runs/x/calibrator")

Methods (``list_calibrators()``): ``temperature`` (:class:`TemperatureScaling`, exact NLL fit),
``vector`` / ``matrix`` / ``dirichlet`` (:class:`VectorScaling`, :class:`MatrixScaling`,
:class:`DirichletCalibration`, with ODIR regularisation), ``histogram`` (:class:`HistogramBinning`) and
``isotonic`` (:class:`IsotonicRegression`). Scaling methods return calibrated logits; histogram binning and
isotonic regression return log-probabilities. ``transform`` always returns float32 on the input's device.

The calibrator stored next to a checkpoint, and which one a run applies (``none | auto | temperature |
PATH``), are found by :mod:`calikd.calibration.lookup` (``resolve_calibrator``).
"""

from calikd.calibration.base import (
    CalibrationConvergenceWarning,
    CalibrationOnTestWarning,
    CalibrationWarning,
    Calibrator,
    NotFittedError,
)
from calikd.calibration.histogram import HistogramBinning
from calikd.calibration.io import FORMAT, FORMAT_VERSION, calibrator_paths, load_calibrator, save_calibrator
from calikd.calibration.isotonic import IsotonicRegression
from calikd.calibration.matrix import DirichletCalibration, MatrixScaling, VectorScaling, odir_penalty
from calikd.calibration.registry import (
    calibrator_class,
    create_calibrator,
    list_calibrators,
    register_calibrator,
)
from calikd.calibration.temperature import (
    TemperatureFit,
    TemperatureScaling,
    fit_temperature_grid,
    fit_temperature_nll,
    nll_derivatives,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CalibrationConvergenceWarning",
    "CalibrationOnTestWarning",
    "CalibrationWarning",
    "Calibrator",
    "DirichletCalibration",
    "HistogramBinning",
    "IsotonicRegression",
    "MatrixScaling",
    "NotFittedError",
    "TemperatureFit",
    "TemperatureScaling",
    "VectorScaling",
    "calibrator_class",
    "calibrator_paths",
    "create_calibrator",
    "fit_temperature_grid",
    "fit_temperature_nll",
    "list_calibrators",
    "load_calibrator",
    "nll_derivatives",
    "odir_penalty",
    "register_calibrator",
    "save_calibrator",
]
