"""The result of a training run (teacher or student): the fields every run has and its JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PATH_FIELDS = ("out_dir", "checkpoint", "best_checkpoint")


@dataclass(kw_only=True)
class RunResult:
    """What every finished run produced; a trainer's result class adds its own test numbers."""

    out_dir: Path
    checkpoint: Path
    best_checkpoint: Path
    best_epoch: int
    history: list[dict[str, float]]
    wall_time_s: float
    train_images_per_s: float
    precision: str
    device: str
    convergence: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out = dataclasses.asdict(self)
        for key in PATH_FIELDS:
            out[key] = str(out[key])
        return out
