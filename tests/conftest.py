"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """Keep tests deterministic and light on the 2-core CI machine."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
