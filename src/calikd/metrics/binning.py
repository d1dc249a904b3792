"""Confidence bins: edges, bin assignment and per-bin sums.

Convention (both binnings): ``n_bins`` float64 edges ``e_0 <= e_1 <= ... <= e_n``; bin ``b`` is the interval
``(e_b, e_{b+1}]``, except that the first bin also holds ``e_0`` itself (a confidence of exactly 0). A sample
is compared with the stored float64 edges exactly (``torch.bucketize(..., right=False)``), so a confidence
that equals an edge lands in the lower bin and a confidence of exactly 1.0 lands in the last bin -- never in
a phantom bin ``n``.

* ``"width"``: ``e_b = b / n`` (the correctly rounded float64 quotient), ``e_0 = 0``, ``e_n = 1``.
* ``"mass"`` (equal-mass / adaptive): sort the ``N`` confidences ascending and cut the sorted list into
  ``n`` runs of nominal sizes ``ceil(N/n)`` for the first ``N mod n`` runs and ``floor(N/n)`` for the rest
  (as ``numpy.array_split``). The upper edge of bin ``b < n - 1`` is the confidence at the last position of
  run ``b``; ``e_0 = 0`` and ``e_n = 1``. Samples are then assigned with the same ``(lo, hi]`` rule, so
  **tied confidences never straddle two bins**: a run of ties that crosses a nominal cut goes entirely to
  the lower bin (the first bin whose upper edge equals the tied value), and the bins that this leaves
  without samples (edges ``(v, v]``) are reported empty and skipped by every metric. Without ties the bin
  counts are exactly the nominal sizes. The result depends only on the multiset of (confidence, correct)
  pairs: deterministic and invariant to the order of the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from calikd.errors import ConfigError


def width_edges(n_bins: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Equal-width edges ``b / n_bins``, ``b = 0..n_bins`` (float64, exact endpoints 0 and 1)."""
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) / n_bins


def mass_edges(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-mass edges of ``confidence`` (``N`` values in [0, 1]) under the module's tie/remainder rule."""
    n = confidence.numel()
    if n == 0:
        raise ConfigError("equal-mass bins need at least one confidence")
    conf = confidence.detach().reshape(-1).to(torch.float64)
    edges = torch.empty(n_bins + 1, dtype=torch.float64, device=conf.device)
    edges[0], edges[-1] = 0.0, 1.0
    if n_bins > 1:
        q, rem = divmod(n, n_bins)
        b = torch.arange(1, n_bins, device=conf.device)
        last = b * q + b.clamp(max=rem) - 1  # last sorted position of each run; >= 0 because n >= 1
        edges[1:-1] = _order_statistics(conf, last)
    return edges


def _order_statistics(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``sort(values)[positions]`` (a partial sort with NumPy on CPU, a full sort elsewhere)."""
    if values.device.type == "cpu":
        kth = positions.numpy()
        return torch.from_numpy(np.partition(values.numpy(), np.unique(kth))[kth])
    return torch.sort(values).values[positions]


def bin_indices(confidence: torch.Tensor, n_bins: int, edges: torch.Tensor | None = None) -> torch.Tensor:
    """Bin of each confidence under the ``(lo, hi]`` convention (0 goes to bin 0, 1.0 to the last bin).

    ``edges`` defaults to :func:`width_edges`; pass :func:`mass_edges` for equal-mass bins.
    """
    if edges is None:
        edges = width_edges(n_bins, confidence.device)
    return torch.bucketize(confidence.to(torch.float64), edges[1:-1].to(confidence.device), right=False)


@dataclass
class BinSums:
    """Per-bin float64 sums of a top-label binning, each ``(n_bins,)``: count, confidence, correct."""

    count: torch.Tensor
    conf_sum: torch.Tensor
    acc_sum: torch.Tensor

    @classmethod
    def zeros(cls, n_bins: int, device: torch.device | str | None = None) -> BinSums:
        z = torch.zeros(n_bins, dtype=torch.float64, device=device)
        return cls(z, z.clone(), z.clone())

    def add(self, idx: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add samples with bins ``idx``, float64 ``confidence`` and boolean ``correct``."""
        n = self.count.numel()
        self.count += torch.bincount(idx, minlength=n).to(torch.float64)
        self.conf_sum += torch.bincount(idx, weights=confidence, minlength=n)
        self.acc_sum += torch.bincount(idx, weights=correct.to(torch.float64), minlength=n)

    @classmethod
    def from_samples(
        cls, confidence: torch.Tensor, correct: torch.Tensor, n_bins: int, edges: torch.Tensor
    ) -> BinSums:
        sums = cls.zeros(n_bins, confidence.device)
        sums.add(bin_indices(confidence, n_bins, edges), confidence.to(torch.float64), correct)
        return sums
