"""Straightforward dense float64 reference implementations (no chunking, no tricks) for the tests."""

from __future__ import annotations

import numpy as np
import torch


def probs_of(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).numpy()


def inner_edges(n_bins: int) -> np.ndarray:
    return (np.arange(n_bins + 1, dtype=np.float64) / n_bins)[1:-1]


def assign(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(lo, hi] bins: the number of inner edges strictly below each value."""
    return (values[:, None] > inner[None, :]).sum(axis=1)


def mass_inner_edges(conf: np.ndarray, n_bins: int) -> np.ndarray:
    runs = np.array_split(np.sort(conf), n_bins)
    return np.array([run[-1] if len(run) else np.sort(conf)[-1] for run in runs[:-1]], dtype=np.float64)


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    return conf, correct


def bin_gaps(conf: np.ndarray, correct: np.ndarray, idx: np.ndarray, n_bins: int):
    out = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            out.append((sel.sum() / len(conf), conf[sel].mean(), correct[sel].mean()))
    return out  # (weight, conf_b, acc_b) for non-empty bins


def ece_family(
    probs: np.ndarray, labels: np.ndarray, n_bins: int, binning: str = "width"
) -> dict[str, float]:
    conf, correct = top_label(probs, labels)
    inner = inner_edges(n_bins) if binning == "width" else mass_inner_edges(conf, n_bins)
    gaps = bin_gaps(conf, correct, assign(conf, inner), n_bins)
    return {
        "ece": sum(w * abs(c - a) for w, c, a in gaps),
        "ece_l2": float(np.sqrt(sum(w * (c - a) ** 2 for w, c, a in gaps))),
        "mce": max(abs(c - a) for w, c, a in gaps),
        "ece_over": sum(w * (c - a) for w, c, a in gaps if c > a),
        "ece_under": sum(w * (a - c) for w, c, a in gaps if c < a),
        "oe": sum(w * c * max(c - a, 0.0) for w, c, a in gaps),
    }


def classwise(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    n, num_classes = probs.shape
    total = 0.0
    for c in range(num_classes):
        p = probs[:, c]
        hit = (labels == c).astype(np.float64)
        idx = assign(p, inner_edges(n_bins))
        for b in range(n_bins):
            sel = idx == b
            if sel.any():
                total += sel.sum() / n * abs(p[sel].mean() - hit[sel].mean())
    return total / num_classes


def others(probs: np.ndarray, labels: np.ndarray, logits: torch.Tensor) -> dict[str, float]:
    n, num_classes = probs.shape
    onehot = np.eye(num_classes)[labels]
    x = logits.double().numpy()
    xy = x[np.arange(n), labels][:, None]
    cols = np.arange(num_classes)[None, :]
    rank = (x > xy).sum(1) + ((x == xy) & (cols < labels[:, None])).sum(1)
    logp = torch.log_softmax(logits.double(), dim=1).numpy()
    return {
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "top5": float((rank < 5).mean()) if num_classes >= 5 else None,
        "nll": float(-logp[np.arange(n), labels].mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "entropy": float(-(probs * logp).sum(1).mean()),
    }
