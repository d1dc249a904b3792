"""The single streaming pass behind every metric: per-chunk softmax statistics, accumulated in float64.

Per chunk of rows (``x``: ``(r, C)`` logits; the work runs in float32, or in float64 for float64 input):

* ``m = max_c x_c``, ``z = x - m``, ``e = exp(z)``, ``s = sum_c e_c`` (so the top class has ``e = 1``).
* per row, in float64 from those float32 row reductions: confidence ``1 / s``, ``NLL = log s - z_y``,
  entropy ``H = log s - (sum_c e_c z_c) / s``, Brier ``sum_c e_c^2 / s^2 - 2 e_y / s + 1``; probabilities
  ``p_c = e_c * (1 / s)`` (so the top class's ``p`` is exactly its confidence). A row whose float32 sum is
  exactly 1 has confidence exactly 1.0 and lands in the last bin. Per-sample values thus carry float32
  rounding (~1e-7 relative: far below the sampling noise of any metric); all sums over rows and chunks are
  float64, and float64 logits are computed in float64 end to end.
* top-1 / top-k correctness by rank ``#{c: x_c > x_y} + #{c < y: x_c = x_y}`` (ties broken by class index,
  as ``argmax`` does, so top-1 == accuracy); dense comparisons run only where cheap bounds cannot decide.
* classwise sums: only the ``p_c`` above the first bin edge (at most ``n_bins - 1`` per row) are binned one
  by one; the first bin of each class gets the rest of the class's column sum.

NaN/inf logits are detected for free (they make ``s``, ``sum e z`` or the row minimum non-finite) and
confirmed exactly; probabilities passed as logits are detected on the first chunk (then confirmed over all
chunks) before any work is done; ``from_probs=True`` rows are checked chunk by chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from calikd.errors import ConfigError
from calikd.metrics.binning import BinSums, mass_edges, width_edges
from calikd.metrics.chunking import chunk_rows, row_slices
from calikd.metrics.validation import (
    PROBS_AS_LOGITS,
    check_probability_rows,
    compute_dtype,
    looks_like_probabilities,
    prob_tolerance,
    raise_if_nonfinite,
    rows_are_probabilities,
)

# Candidates for the classwise bins above the first edge are pre-selected in the compute dtype with this
# relative safety margin, then binned exactly in float64.
_MARGIN = 1e-5


@dataclass(frozen=True)
class Request:
    """What one pass must accumulate beyond accuracy and NLL (always computed)."""

    n_bins: int = 15
    entropy: bool = False
    width: bool = False  # top-label equal-width bin sums
    keep_confidence: bool = False  # per-sample confidence + correctness (equal-mass bins)
    brier: bool = False
    topk: int | None = None
    classwise: bool = False
    per_sample_entropy: bool = False


@dataclass
class ClasswiseSums:
    """One-vs-rest bin sums, each ``(C, n_bins)`` float64: sample count, sum of ``p_c``, count of label c."""

    count: torch.Tensor
    prob_sum: torch.Tensor
    label_count: torch.Tensor


@dataclass
class Totals:
    """Everything one pass accumulated (sums are Python floats; tensors stay on the logits' device)."""

    n_samples: int
    num_classes: int
    n_bins: int
    correct: float
    nll: float
    entropy: float | None
    brier: float | None
    topk_correct: float | None
    width: BinSums | None
    confidence: torch.Tensor | None
    correct_mask: torch.Tensor | None
    classwise: ClasswiseSums | None
    entropy_per_sample: torch.Tensor | None


class _Rows(NamedTuple):
    key: torch.Tensor  # (r, C) ranking key (logits or probabilities)
    key_max: torch.Tensor  # (r,)
    e: torch.Tensor  # (r, C) unnormalised probabilities, p = e * scale
    e_max: torch.Tensor | float  # e of the top class (1.0 for logits)
    row_sum: torch.Tensor  # (r,) float64: the compute-dtype row sum of e
    scale: torch.Tensor  # (r,) float64: 1 / row_sum for logits, 1 for probabilities
    conf: torch.Tensor  # (r,) float64
    nll: torch.Tensor
    ent: torch.Tensor | None
    brier: torch.Tensor | None
    e_y: torch.Tensor  # (r,) float64
    e_sq: torch.Tensor | None  # (r,) float64 sum of e^2 (when the Brier score is computed)
    scratch: torch.Tensor | None  # z = x - max (a work buffer the ranking may overwrite), logits only


class _Workspace:
    """Reusable ``(rows, C)`` work buffers (allocated once, sliced per chunk)."""

    def __init__(self, rows: int, num_classes: int, dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = (rows, num_classes), dtype, device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, r: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        buf = self._bufs.get(name)
        if buf is None:
            buf = self._bufs[name] = torch.empty(self.shape, dtype=dtype or self.dtype, device=self.device)
        return buf[:r]


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_c a_c b_c`` per row (a batched dot on CPU; elementwise elsewhere, so TF32 never applies)."""
    if a.device.type == "cpu":
        return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)
    return (a * b).sum(dim=1)


def _logit_rows(x: torch.Tensor, y1: torch.Tensor, ws: _Workspace, brier: bool, entropy: bool) -> _Rows:
    r = x.shape[0]
    xc = x if x.dtype == ws.dtype else ws.get("x", r).copy_(x)
    m = xc.amax(dim=1, keepdim=True)
    z = torch.sub(xc, m, out=ws.get("z", r))
    e = torch.exp(z, out=ws.get("e", r))
    s = e.sum(dim=1)
    # NaN or +inf anywhere makes s NaN; -inf makes e * z = 0 * -inf NaN (or the row minimum -inf)
    check = _rowdot(e, z) if entropy else xc.amin(dim=1)
    if not bool(torch.isfinite(s).all() & torch.isfinite(check).all()):
        raise_if_nonfinite(x)
        # finite logits whose differences overflow: exp underflowed to 0, keep 0 * z at 0
        z.clamp_min_(torch.finfo(ws.dtype).min)
        check = _rowdot(e, z) if entropy else check
    s64 = s.double()
    log_s = s64.log()
    e_y = e.gather(1, y1).squeeze(1).double()
    # z_y >= the dtype's min: an overflowed difference gives a huge but finite NLL whatever was requested
    nll = log_s - z.gather(1, y1).squeeze(1).double().clamp_min(torch.finfo(ws.dtype).min)
    ent = log_s - check.double() / s64 if entropy else None
    b = sq = None
    if brier:
        sq = torch.linalg.vector_norm(e, dim=1).double().square()
        b = ((sq / s64 - 2 * e_y) / s64 + 1).clamp_(0, 2)
    conf = s64.reciprocal()
    return _Rows(xc, m.squeeze(1), e, 1.0, s64, conf, conf, nll, ent, b, e_y, sq, z)


def _prob_rows(
    x: torch.Tensor, y1: torch.Tensor, ws: _Workspace, brier: bool, entropy: bool, tol: float
) -> _Rows:
    r = x.shape[0]
    p = x if x.dtype == ws.dtype else ws.get("x", r).copy_(x)
    row_sum = p.sum(dim=1).double()
    if not bool(torch.isfinite(row_sum).all()):
        raise_if_nonfinite(x)
    check_probability_rows(p, tol)
    m = p.amax(dim=1)
    p_y = p.gather(1, y1).squeeze(1).double()
    finfo = torch.finfo(ws.dtype)
    nll = -p_y.clamp_min(finfo.tiny).log()
    ent = None
    if entropy:
        log_p = torch.log(p, out=ws.get("z", r)).clamp_min_(finfo.min)
        ent = -_rowdot(p, log_p).double()
    b = sq = None
    if brier:
        sq = torch.linalg.vector_norm(p, dim=1).double().square()
        b = (sq - 2 * p_y + 1).clamp_(0, 2)
    ones = torch.ones(r, dtype=torch.float64, device=p.device)
    m64 = m.double()
    return _Rows(p, m, p, m64, row_sum, ones, m64, nll, ent, b, p_y, sq, None)


def _ranking(
    rows: _Rows, y: torch.Tensor, k: int | None, ws: _Workspace
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Top-1 and (if ``k``) top-k correctness under the class-index tie-break.

    Dense comparisons run only on the rows that cheap bounds leave open: two tied maxima need
    ``sum e >= 2 e_max`` and ``sum e^2 >= 2 e_max^2`` (else, for logits, the maximum of ``z = x - max``
    without ``y`` says whether another class ties at 0); ``(k + 1) e_y > sum e`` puts ``y`` in the top ``k``,
    since every class ranked above ``y`` has ``e_c >= e_y``. (The float row sums are within a factor
    ``margin`` of the exact ones.)
    """
    key = rows.key
    r, num_classes = key.shape
    margin = 1 + 2 * num_classes * torch.finfo(key.dtype).eps
    ky = key.gather(1, y.unsqueeze(1))
    correct = ky.squeeze(1) == rows.key_max  # nothing strictly above y ...
    maybe_tied = correct & (2 * rows.e_max <= rows.row_sum * margin)  # ... but maybe a tie before y
    if rows.e_sq is not None:
        maybe_tied &= 2 * rows.e_max * rows.e_max <= rows.e_sq * margin
    if rows.scratch is not None and int(maybe_tied.sum()) > r // 16:
        # z_c == 0 exactly iff x_c == max; z is not read again, so mask y out in place
        z = rows.scratch.scatter_(1, y.unsqueeze(1), -math.inf)
        maybe_tied &= z.amax(dim=1) == 0
    if bool(maybe_tied.any()):
        idx = maybe_tied.nonzero().squeeze(1)
        first = (key[idx] == ky[idx]).to(torch.uint8).argmax(dim=1)
        correct[idx] = first == y[idx]
    if k is None or k == 1:
        return correct, (correct if k == 1 else None)
    ok = correct | ((k + 1) * rows.e_y > rows.row_sum * margin)
    idx = (~ok).nonzero().squeeze(1)
    if idx.numel() == 0:
        return correct, ok
    dense = idx.numel() > r // 4  # compare whole chunks rather than copy many of their rows
    sub, sub_ky, sub_y = (key, ky, y) if dense else (key[idx], ky[idx], y[idx])
    counts = ws.get("f", sub.shape[0])
    gt = torch.gt(sub, sub_ky, out=counts).sum(dim=1)
    sub_ok = gt < k
    # ties with y could still push it out of the top k
    unsure = (sub_ok & ~ok if dense else sub_ok).nonzero().squeeze(1)
    if unsure.numel():
        cols = torch.arange(num_classes, device=key.device)
        before = ((sub[unsure] == sub_ky[unsure]) & (cols < sub_y[unsure].unsqueeze(1))).sum(dim=1)
        sub_ok[unsure] = gt[unsure] + before < k
    if dense:
        ok |= sub_ok
    else:
        ok[idx] = sub_ok
    return correct, ok


def width_bins(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Equal-width bin of float64 ``values`` in [0, 1]: ``ceil(v n) - 1``, then corrected by one where the
    rounded product disagrees with the stored float64 edges, so the result equals
    ``bucketize(values, edges[1:-1])`` exactly (at a fraction of its cost)."""
    n_bins = edges.numel() - 1
    b = (values * n_bins).ceil_().sub_(1).clamp_(0, n_bins - 1)
    # the stored edges are the correctly rounded quotients b / n, so they need no table lookup
    b -= ((values <= b / n_bins) & (b > 0)).to(b.dtype)
    b += ((values > (b + 1) / n_bins) & (b < n_bins - 1)).to(b.dtype)
    return b.long()


def _candidates(e: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and values of the entries ``e[i, c] > thr[i]`` (NumPy on CPU: several times faster)."""
    if e.device.type == "cpu":
        e_np = e.numpy()
        flat = np.flatnonzero(np.greater(e_np, thr.numpy()[:, None]))
        ri, ci = np.divmod(flat, e.shape[1])
        return torch.from_numpy(ri), torch.from_numpy(ci), torch.from_numpy(e_np.reshape(-1).take(flat))
    ri, ci = torch.nonzero(e > thr.unsqueeze(1), as_tuple=True)
    return ri, ci, e[ri, ci]


def _classwise_add(
    sums: ClasswiseSums, col_total: torch.Tensor, rows: _Rows, y: torch.Tensor, edges: torch.Tensor
) -> None:
    e, scale = rows.e, rows.scale
    num_classes = e.shape[1]
    n_bins = edges.numel() - 1
    if e.device.type == "cpu":
        col_total += torch.mv(e.t(), scale.to(e.dtype)).double()
    else:
        col_total += (e * scale.to(e.dtype).unsqueeze(1)).sum(dim=0).double()
    size = num_classes * n_bins
    if n_bins > 1:
        # superset of {p > e_1} (safety margin), then binned exactly in float64
        thr = ((float(edges[1]) * (1 - _MARGIN)) / scale).to(e.dtype)
        ri, ci, vals = _candidates(e, thr)
        pv = vals.double() * scale[ri]
        flat = ci * n_bins + width_bins(pv, edges)
        sums.count += torch.bincount(flat, minlength=size).double()
        sums.prob_sum += torch.bincount(flat, weights=pv, minlength=size)
    flat_y = y * n_bins + width_bins(rows.e_y * scale, edges)
    sums.label_count += torch.bincount(flat_y, minlength=size).double()


def accumulate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    request: Request,
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> Totals:
    """Run one pass over ``logits`` (validated structurally by the caller; ``labels`` int64, same device)."""
    logits, labels = logits.detach(), labels.detach()
    n, num_classes = logits.shape
    device = logits.device
    rows_per_chunk = chunk_rows(num_classes, chunk_size)
    cd = compute_dtype(logits.dtype)
    ws = _Workspace(min(rows_per_chunk, n), num_classes, cd, device)
    n_bins = request.n_bins
    edges = width_edges(n_bins, device)
    tol = prob_tolerance(logits.dtype, from_probs=from_probs)
    if not from_probs:
        first = logits[: min(rows_per_chunk, n)]
        if rows_are_probabilities(first, tol) and looks_like_probabilities(logits, chunk_size=chunk_size):
            raise ConfigError(PROBS_AS_LOGITS)

    f64 = {"dtype": torch.float64, "device": device}
    zero = torch.zeros((), **f64)
    correct_sum, nll_sum, ent_sum, brier_sum, topk_sum = (zero.clone() for _ in range(5))
    width = BinSums.zeros(n_bins, device) if request.width else None
    conf_all = torch.empty(n, **f64) if request.keep_confidence else None
    correct_all = torch.empty(n, dtype=torch.bool, device=device) if request.keep_confidence else None
    ent_all = torch.empty(n, **f64) if request.per_sample_entropy else None
    cw = col_total = None
    if request.classwise:
        size = num_classes * n_bins
        cw = ClasswiseSums(torch.zeros(size, **f64), torch.zeros(size, **f64), torch.zeros(size, **f64))
        col_total = torch.zeros(num_classes, **f64)

    for sl in row_slices(n, rows_per_chunk):
        x, y = logits[sl], labels[sl]
        y1 = y.unsqueeze(1)
        if from_probs:
            rows = _prob_rows(x, y1, ws, request.brier, request.entropy, tol)
        else:
            rows = _logit_rows(x, y1, ws, request.brier, request.entropy)
        correct, top_ok = _ranking(rows, y, request.topk, ws)
        correct_sum += correct.sum()
        nll_sum += rows.nll.sum()
        if rows.ent is not None:
            ent_sum += rows.ent.sum()
        if rows.brier is not None:
            brier_sum += rows.brier.sum()
        if top_ok is not None:
            topk_sum += top_ok.sum()
        if width is not None:
            width.add(width_bins(rows.conf, edges), rows.conf, correct)
        if conf_all is not None and correct_all is not None:
            conf_all[sl], correct_all[sl] = rows.conf, correct
        if ent_all is not None and rows.ent is not None:
            ent_all[sl] = rows.ent
        if cw is not None and col_total is not None:
            _classwise_add(cw, col_total, rows, y, edges)

    classwise = None
    if cw is not None and col_total is not None:
        count = cw.count.view(num_classes, n_bins)
        prob_sum = cw.prob_sum.view(num_classes, n_bins)
        count[:, 0] += n - count.sum(dim=1)
        prob_sum[:, 0] += col_total - prob_sum.sum(dim=1)
        classwise = ClasswiseSums(count, prob_sum, cw.label_count.view(num_classes, n_bins))
    return Totals(
        n_samples=n,
        num_classes=num_classes,
        n_bins=n_bins,
        correct=float(correct_sum),
        nll=float(nll_sum),
        entropy=float(ent_sum) if request.entropy else None,
        brier=float(brier_sum) if request.brier else None,
        topk_correct=float(topk_sum) if request.topk is not None else None,
        width=width,
        confidence=conf_all,
        correct_mask=correct_all,
        classwise=classwise,
        entropy_per_sample=ent_all,
    )


def top_label_bins(totals: Totals, binning: str) -> tuple[BinSums, torch.Tensor]:
    """The top-label bin sums and edges of ``totals`` (``"mass"`` needs ``Request.keep_confidence``)."""
    if binning == "width":
        assert totals.width is not None
        return totals.width, width_edges(totals.n_bins, totals.width.count.device)
    assert totals.confidence is not None and totals.correct_mask is not None
    edges = mass_edges(totals.confidence, totals.n_bins)
    return BinSums.from_samples(totals.confidence, totals.correct_mask, totals.n_bins, edges), edges
