"""Did a training run converge? A check recorded by every teacher and student run, flagged in reports.

A run counts as converged when both hold:

- **its schedule annealed:** the learning rate at the end is at most :data:`ANNEALED_RATIO` (10%) of its peak
  (cosine, one-cycle and step schedules end there; a constant learning rate never does);
- **its validation accuracy settled:** over the last :data:`LAST_EPOCHS` (3) epochs it moved by at most
  :data:`BAND` (1 percentage point, max - min). Runs without a validation split use training accuracy.

Fewer than :data:`LAST_EPOCHS` epochs cannot show a plateau and count as not converged. Given the chance
level (1 / classes), a run whose last accuracy is within :data:`COLLAPSE_SHARE` (10%) of the way from chance
to 100% has **collapsed** (a network that stopped learning in its first steps settles there just as well) and
counts as not converged. The check reads the
run's per-epoch history only, so it applies to finished, resumed and stored runs alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from calikd.report.run import convergence_text

ANNEALED_RATIO = 0.1
LAST_EPOCHS = 3
BAND = 0.01
COLLAPSE_SHARE = 0.1


@dataclass(frozen=True)
class Convergence:
    """The outcome of :func:`check_convergence`; ``reason`` says in words why a run did not converge."""

    converged: bool
    annealed: bool
    settled: bool
    final_lr_ratio: float | None
    accuracy_range: float | None
    accuracy_split: str
    epochs: int
    band: float
    last_epochs: int
    reason: str
    collapsed: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for logs and reports (:func:`calikd.report.run.convergence_text`)."""
        return convergence_text(self.to_dict())


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def check_convergence(
    history: Sequence[Mapping[str, float]],
    *,
    peak_lr: float | None = None,
    band: float = BAND,
    last_epochs: int = LAST_EPOCHS,
    annealed_ratio: float = ANNEALED_RATIO,
    chance: float | None = None,
) -> Convergence:
    """Check a run's per-epoch ``history`` (records with ``lr`` and ``val_accuracy`` or ``train_accuracy``).

    ``peak_lr`` is the configured learning rate (the largest ``lr`` recorded is used if it is larger);
    ``chance`` the accuracy of guessing (1 / classes), for the collapse rule (none without it)."""
    lrs = [v for h in history if (v := _finite(h.get("lr"))) is not None]
    peak = max([*lrs, *([peak_lr] if peak_lr else [])], default=None)
    ratio = lrs[-1] / peak if lrs and peak else None
    annealed = ratio is not None and ratio <= annealed_ratio
    split = "val" if history and all(_finite(h.get("val_accuracy")) is not None for h in history) else "train"
    accs = [_finite(h.get(f"{split}_accuracy")) for h in history[-last_epochs:]]
    spread = None
    if len(accs) == last_epochs and all(a is not None for a in accs):
        spread = max(accs) - min(accs)  # type: ignore[type-var,operator]
    settled = spread is not None and spread <= band + 1e-12
    last = accs[-1] if accs else None
    collapsed = chance is not None and last is not None and last <= chance + COLLAPSE_SHARE * (1 - chance)
    reasons = []
    if collapsed:
        reasons.append(f"collapsed: {split} accuracy {last:.4f}, chance is {chance:.4f}")
    if not annealed:
        reasons.append(
            "learning rate not annealed"
            + (f" (ends at {ratio:.3g}x its peak, needs <= {annealed_ratio})" if ratio is not None else "")
        )
    if spread is None:
        reasons.append(f"{len(history)} epoch(s): a plateau needs {last_epochs}")
    elif not settled:
        reasons.append(
            f"{split} accuracy still moving ({spread:.4f} over the last {last_epochs} epochs, band {band})"
        )
    return Convergence(
        converged=annealed and settled and not collapsed,
        annealed=annealed,
        settled=settled,
        final_lr_ratio=ratio,
        accuracy_range=spread,
        accuracy_split=split,
        epochs=len(history),
        band=band,
        last_epochs=last_epochs,
        reason="; ".join(reasons),
        collapsed=collapsed,
    )
