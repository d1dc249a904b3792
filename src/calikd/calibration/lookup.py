"""The calibrator of a checkpoint: where it is stored, which one a run asks for, loading and checking it.

Files next to a checkpoint ``<stem>.safetensors`` (``calikd calibrate`` writes them):

- ``<stem>.calibrator.json`` (+ ``.safetensors``): the primary calibrator;
- ``<stem>.calibrator-<method>.json``: every other fitted method.

Which calibrator a run applies is a :class:`CalibratorSpec`, parsed once from what the user wrote (``none``,
``auto``, ``temperature`` or a path) by :func:`parse_calibrator_spec`. :func:`resolve_calibrator` loads it
and refuses a calibrator fitted on other weights or for another number of classes than the checkpoint's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from calikd.calibration.base import Calibrator
from calikd.calibration.io import load_calibrator
from calikd.errors import ConfigError, did_you_mean
from calikd.store.checkpoint import checkpoint_id, read_meta, resolve_paths

__all__ = [
    "KEYWORDS",
    "CalibratorSpec",
    "ResolvedCalibrator",
    "calibrator_stem",
    "calibrator_suffix",
    "check_calibrator_fits",
    "checkpoint_stem",
    "find_calibrator",
    "parse_calibrator_spec",
    "resolve_calibrator",
    "suffixed",
]

SpecKind = Literal["none", "auto", "temperature", "path"]
#: The words a calibration spec may be; any other text is the path of a calibrator file.
KEYWORDS: tuple[SpecKind, ...] = ("none", "auto", "temperature")


@dataclass(frozen=True)
class CalibratorSpec:
    """Which calibrator to apply to a checkpoint's logits.

    ``none``: raw logits; ``auto``: the primary calibrator stored next to the checkpoint; ``temperature``:
    the stored temperature-scaling calibrator (a caller may fit one when there is none); ``path``: the
    calibrator file at :attr:`path` (as the user wrote it).
    """

    kind: SpecKind
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (*KEYWORDS, "path"):
            raise ValueError(f"unknown calibrator spec kind {self.kind!r}")
        if (self.kind == "path") != (self.path is not None):
            raise ValueError("a calibrator spec has a path exactly when its kind is 'path'")

    def __str__(self) -> str:
        """The text it was parsed from: the keyword, or the path."""
        return self.path if self.path is not None else self.kind


def parse_calibrator_spec(
    text: str | os.PathLike[str] | CalibratorSpec,
    *,
    keywords: Sequence[str] = KEYWORDS,
    paths: bool = True,
) -> CalibratorSpec:
    """The spec that ``text`` names: one of ``keywords``, else (with ``paths``) the path of a calibrator file.

    A caller that takes fewer keywords passes them (a word it does not take is then a path, or refused);
    a :class:`CalibratorSpec` is returned as it is when its kind is one the caller takes.
    """
    allowed = [*keywords, *(["PATH"] if paths else [])]
    if isinstance(text, CalibratorSpec):
        if text.kind in keywords or (text.kind == "path" and paths):
            return text
        raise ConfigError(
            f"calibration '{text.kind}' is not available here", hint=f"choose from: {', '.join(allowed)}"
        )
    word = os.fspath(text) if isinstance(text, str | os.PathLike) else str(text)
    if word in keywords:
        return CalibratorSpec(word)  # type: ignore[arg-type]  # a keyword is a kind
    if not paths:
        raise ConfigError(
            f"unknown calibration '{word}'{did_you_mean(word, keywords)}",
            hint=f"choose from: {', '.join(keywords)}",
        )
    if not word.strip():
        raise ConfigError("empty calibration", hint=f"choose from: {' | '.join(allowed)}")
    return CalibratorSpec("path", word)


# ---------------------------------------------------------------------------------------- where files live
def checkpoint_stem(checkpoint: str | Path) -> Path:
    """The path of a checkpoint without suffix (``runs/t/last``), from any form ``read_checkpoint`` takes."""
    return Path(resolve_paths(checkpoint).stem)


def calibrator_suffix(method: str | None) -> str:
    """``.calibrator`` for the primary calibrator (``method`` None), else ``.calibrator-<method>``."""
    return ".calibrator" if method is None else f".calibrator-{method}"


def suffixed(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix``; unlike ``with_suffix`` it keeps the dots in ``last.calibrator``."""
    return stem.with_name(stem.name + suffix)


def calibrator_stem(checkpoint: str | Path, method: str | None = None) -> Path:
    """Where the (primary, when ``method`` is None) calibrator of ``checkpoint`` is stored."""
    return suffixed(checkpoint_stem(checkpoint), calibrator_suffix(method))


def find_calibrator(checkpoint: str | Path) -> Path | None:
    """The primary calibrator file next to ``checkpoint``, or None if it was never calibrated."""
    path = suffixed(calibrator_stem(checkpoint), ".json")
    return path if path.exists() else None


# ------------------------------------------------------------------------------------- loading and checks
class ResolvedCalibrator(NamedTuple):
    """The calibrator a spec resolved to and the file it came from (both None: no calibrator)."""

    calibrator: Calibrator | None
    path: Path | None


def check_calibrator_fits(
    calibrator: Calibrator | None,
    calibrator_path: str | Path | None,
    num_classes: int,
    checkpoint: str | Path,
) -> None:
    """Refuse a calibrator fitted for another number of classes than the checkpoint's model has."""
    if calibrator is not None and calibrator.num_classes != num_classes:
        raise ConfigError(
            f"calibrator '{calibrator_path}' was fitted on {calibrator.num_classes} classes, but checkpoint "
            f"'{checkpoint}' predicts {num_classes}",
            hint=f"use the calibrator fitted on this checkpoint (`calikd calibrate {checkpoint}`), or none",
        )


def _check_weights(calibrator: Calibrator, path: Path, checkpoint: str | Path) -> None:
    """Refuse a calibrator fitted on other weights (the checkpoint was retrained or resumed since)."""
    fitted_on = calibrator.record.get("checkpoint_id")
    current = checkpoint_id(checkpoint)
    if fitted_on is not None and fitted_on != current:
        raise ConfigError(
            f"calibrator '{path}' was fitted on other weights (checkpoint {fitted_on}) than '{checkpoint}' "
            f"has now ({current})",
            hint=f"refit it with `calikd calibrate {checkpoint}`",
        )


def _stored_temperature(checkpoint: str | Path) -> ResolvedCalibrator:
    """The stored temperature calibrator: the primary one when it is temperature scaling, else
    ``<stem>.calibrator-temperature.json``; each file is read once."""
    primary = find_calibrator(checkpoint)
    if primary is not None:
        calibrator = load_calibrator(primary)
        if calibrator.method == "temperature":
            return ResolvedCalibrator(calibrator, primary)
    named = suffixed(calibrator_stem(checkpoint, "temperature"), ".json")
    return (
        ResolvedCalibrator(load_calibrator(named), named)
        if named.exists()
        else ResolvedCalibrator(None, None)
    )


def _load(checkpoint: str | Path, spec: CalibratorSpec, required: bool) -> ResolvedCalibrator:
    if spec.kind == "none":
        return ResolvedCalibrator(None, None)
    if spec.kind == "temperature":
        return _stored_temperature(checkpoint)
    if spec.kind == "path":
        assert spec.path is not None
        path = Path(spec.path)
        return ResolvedCalibrator(load_calibrator(path), path)
    path = find_calibrator(checkpoint)
    if path is not None:
        return ResolvedCalibrator(load_calibrator(path), path)
    if not required:
        return ResolvedCalibrator(None, None)
    raise ConfigError(
        f"checkpoint '{checkpoint}' has no calibrator next to it",
        hint=f"run `calikd calibrate {checkpoint}` first, or use no calibration ('none')",
    )


def resolve_calibrator(
    checkpoint: str | Path, spec: CalibratorSpec, *, required: bool = True
) -> ResolvedCalibrator:
    """The calibrator ``spec`` asks for on ``checkpoint``'s logits, loaded and checked.

    ``none`` gives no calibrator; ``auto`` the primary one stored next to the checkpoint (when there is
    none: a :class:`ConfigError`, or no calibrator unless ``required``); ``temperature`` the stored
    temperature-scaling calibrator, or no calibrator (the caller may fit one); ``path`` that file. A
    calibrator fitted on other weights, or for another number of classes, is refused.
    """
    resolved = _load(checkpoint, spec, required)
    if resolved.calibrator is not None and resolved.path is not None:
        _check_weights(resolved.calibrator, resolved.path, checkpoint)
        num_classes = int(read_meta(checkpoint)["num_classes"])
        check_calibrator_fits(resolved.calibrator, resolved.path, num_classes, checkpoint)
    return resolved
