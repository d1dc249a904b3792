"""Shared fixtures of the calibration tests: seeded synthetic logits with a known temperature or bias."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

Synthetic = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small float64 problems: one intra-op thread is as fast and immune to a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_synthetic(
    n: int = 2000,
    c: int = 10,
    t_true: float = 1.5,
    seed: int = 0,
    *,
    scale: float = 3.0,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits ``z = scale * N(0, 1) (+ bias)``; labels drawn from ``softmax(z_clean / t_true)``."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randn(n, c, generator=gen) * scale
    labels = torch.multinomial(torch.softmax(clean.double() / t_true, dim=1), 1, generator=gen).squeeze(1)
    logits = clean if bias is None else clean + bias
    return logits, labels


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    return make_synthetic
