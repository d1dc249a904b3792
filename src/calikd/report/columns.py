"""The metric columns of every document and console table, in one place.

A preset is a :class:`MetricColumns`: the metric keys in the order shown, and their column headers (the keys
themselves unless a document names them otherwise). Documents take a preset instead of spelling the tuple.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricColumns:
    """Metric keys in display order and their headers (``headers`` defaults to the keys)."""

    keys: tuple[str, ...]
    headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.headers:
            object.__setattr__(self, "headers", self.keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def values(self, metrics: Mapping[str, Any]) -> list[Any]:
        """The values of ``metrics`` in column order (``None`` where one is missing)."""
        return [metrics.get(k) for k in self.keys]


# a distillation run: report.md (every metric) and the `calikd distill` console table
RUN = MetricColumns(("accuracy", "nll", "ece", "ace", "entropy", "brier", "oe"))
RUN_CONSOLE = MetricColumns(("accuracy", "nll", "ece", "ace", "entropy"))
# a teacher's training run on the console (`calikd train-teacher`)
TEACHER_CONSOLE = MetricColumns(("accuracy", "nll", "ece"))
# a calibration: the document (every calibration metric) and the `calikd calibrate` console table
CALIBRATION = MetricColumns(
    ("accuracy", "nll", "brier", "ece", "ace", "mce", "classwise_ece", "oe", "ece_over", "ece_under")
)
CALIBRATION_CONSOLE = MetricColumns(("accuracy", "nll", "brier", "ece", "ace", "oe"))
# a sweep: its teachers and its students (also one run's summary.md)
SWEEP_TEACHER = MetricColumns(("accuracy", "nll", "ece", "ace", "oe"))
STUDENT = MetricColumns(("accuracy", "ece", "ace", "nll", "entropy"))
# a model under corruption (robustness.md): error and calibration in percent; the per-corruption table
# shows the first four
ROBUSTNESS = MetricColumns(
    ("error", "nll", "ece", "ace", "brier"), ("error %", "NLL", "ECE %", "ACE %", "Brier")
)
# the evidence shown for every ranked teacher
RANKING = MetricColumns(("accuracy", "nll", "ece", "ace", "oe", "entropy"))

__all__ = [
    "CALIBRATION",
    "CALIBRATION_CONSOLE",
    "RANKING",
    "ROBUSTNESS",
    "RUN",
    "RUN_CONSOLE",
    "STUDENT",
    "SWEEP_TEACHER",
    "TEACHER_CONSOLE",
    "MetricColumns",
]
