"""Input checks shared by every metric: logits ``(N, C)`` and integer labels ``(N,)``.

Structural checks (types, shapes, dtypes, label range, ``n_bins``, option names) run up front in
``O(N)``. Content checks (NaN/inf, probabilities passed as logits, or non-probabilities passed with
``from_probs=True``) are chunked: :func:`check_logits_labels` streams over the rows, and the metric passes
fuse the same checks into their single pass over the chunks. Every failure raises
:class:`~calikd.errors.ConfigError`.
"""

from __future__ import annotations

import torch

from calikd.errors import ConfigError
from calikd.metrics.chunking import chunk_rows, row_slices

NORMS = ("l1", "l2", "max")
BINNINGS = ("width", "mass")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

PROBS_AS_LOGITS = (
    "these look like probabilities (rows in [0, 1] summing to 1); pass logits or use from_probs=True"
)
NONFINITE_HINT = "check the model's outputs (diverged training?)"


def prob_tolerance(dtype: torch.dtype, *, from_probs: bool = False) -> float:
    """Allowed ``|row sum - 1|``: ``max(1e-4, 2 eps)`` to flag probabilities given as logits, and a laxer
    ``max(1e-3, 4 eps)`` to accept ``from_probs=True`` input (``eps`` of the input dtype, so float16 and
    bfloat16 probabilities are recognised too)."""
    eps = torch.finfo(dtype).eps
    return max(1e-3, 4 * eps) if from_probs else max(1e-4, 2 * eps)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of the per-chunk work: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_logits(logits: object, what: str = "logits") -> torch.Tensor:
    """Raise :class:`ConfigError` unless ``logits`` is a non-empty floating ``(N, C)`` tensor."""
    if not isinstance(logits, torch.Tensor):
        raise ConfigError(f"{what} must be a torch tensor; got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ConfigError(f"{what} must have shape (N, C); got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ConfigError("no samples: logits and labels are empty")
    if logits.shape[1] == 0:
        raise ConfigError(f"{what} have no classes (C = 0)")
    if logits.dtype not in FLOAT_DTYPES:
        raise ConfigError(f"{what} must be float16, bfloat16, float32 or float64; got dtype {logits.dtype}")
    return logits


def check_structure(logits: object, labels: object) -> torch.Tensor:
    """Check shapes, dtypes and the label range; return ``labels`` as int64 on the logits' device."""
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ConfigError("logits and labels must be torch tensors")
    if logits.ndim != 2:
        raise ConfigError(f"logits must have shape (N, C); got {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ConfigError(
            f"labels must have shape (N,) with N={logits.shape[0]} matching the logits; "
            f"got {tuple(labels.shape)}"
        )
    check_logits(logits)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ConfigError(f"labels must be integer class indices; got dtype {labels.dtype}")
    num_classes = logits.shape[1]
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ConfigError(
            f"labels must lie in [0, {num_classes - 1}] for {num_classes} classes; found {lo}..{hi}"
        )
    return labels.to(device=logits.device, dtype=torch.int64)


def check_n_bins(n_bins: object) -> int:
    """``n_bins`` must be an integer >= 1."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be an integer >= 1; got {n_bins!r}")
    return n_bins


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def raise_if_nonfinite(chunk: torch.Tensor) -> None:
    """Raise the NaN/inf error if ``chunk`` has a non-finite value."""
    if not bool(torch.isfinite(chunk).all()):
        raise ConfigError("logits contain NaN or inf", hint=NONFINITE_HINT)


def rows_are_probabilities(chunk: torch.Tensor, tol: float) -> bool:
    """True when every row of ``chunk`` lies in [0, 1] and sums to 1 within ``tol``."""
    if chunk.shape[1] < 2 or bool(chunk.amax() > 1) or bool(chunk.amin() < 0):
        return False
    return bool(((chunk.sum(dim=1, dtype=torch.float64) - 1).abs() <= tol).all())


def looks_like_probabilities(values: torch.Tensor, *, chunk_size: int | None = None) -> bool:
    """True when every row lies in [0, 1] and sums to 1 (within :func:`prob_tolerance`); chunked."""
    if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] == 0:
        return False
    values = values.detach()
    tol = prob_tolerance(values.dtype)
    rows = chunk_rows(values.shape[1], chunk_size)
    return all(rows_are_probabilities(values[sl], tol) for sl in row_slices(values.shape[0], rows))


def check_probability_rows(chunk: torch.Tensor, tol: float) -> None:
    """``from_probs=True`` input: raise unless every row lies in [0, 1] and sums to 1 within ``tol``."""
    if not rows_are_probabilities(chunk, tol):
        raise ConfigError(
            f"from_probs=True but these are not probabilities (rows in [0, 1] summing to 1 within {tol:g})",
            hint="pass logits with from_probs=False",
        )


def check_logits_labels(
    logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> None:
    """Raise :class:`ConfigError` for wrong shapes, NaN/inf, labels out of range, or probabilities as logits
    (with ``from_probs=True``: for rows that are not probabilities). Chunked: O(chunk x C) extra memory."""
    check_structure(logits, labels)
    logits = logits.detach()
    rows = chunk_rows(logits.shape[1], chunk_size)
    for sl in row_slices(logits.shape[0], rows):
        raise_if_nonfinite(logits[sl])
    if from_probs:
        tol = prob_tolerance(logits.dtype, from_probs=True)
        for sl in row_slices(logits.shape[0], rows):
            check_probability_rows(logits[sl], tol)
    elif looks_like_probabilities(logits, chunk_size=chunk_size):
        raise ConfigError(PROBS_AS_LOGITS)


def as_log_probs(logits: torch.Tensor, *, from_probs: bool = False) -> torch.Tensor:
    """Log-probabilities in float32 (float64 stays float64); ``from_probs`` takes probabilities instead."""
    x = logits.to(compute_dtype(logits.dtype))
    if from_probs:
        return x.clamp_min(torch.finfo(x.dtype).tiny).log()
    return torch.log_softmax(x, dim=1)
