"""Rank candidate teachers by how well they are predicted to teach, before distilling anything.

Kim et al. (2025) found that a teacher's calibration error on held-out data, in particular its adaptive
calibration error (ACE: top-label calibration error on equal-mass bins), predicts the accuracy of the
student it teaches far better than the teacher's own accuracy does (R^2 0.92 vs 0.68 across their
teachers). :func:`rank_teachers` measures every candidate on its own held-out **val** split (the split its
training held out; the test split is never touched) and orders the candidates by a criterion (ACE by
default); :func:`check_against_students` then compares that predicted order with the students a sweep
actually obtained from those teachers (``calikd sweep`` records them in the results store).

Calibration (``calibration=``):

* ``"none"``: the raw logits.
* ``"temperature"``: temperature scaling fitted (NLL) on the val split, then scored on that same val split.
  Fitting and scoring on the same samples is optimistic: the calibrated numbers are a lower bound on the
  error a fresh split would show, the more so the smaller the val split. The ranking records this caveat.
* ``"auto"``: the calibrator ``calikd calibrate`` stored next to each checkpoint (an error where there is
  none). ``calikd calibrate`` fits on val by default, so the same caveat applies.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from calikd.analysis import correlate, rank_agreement
from calikd.calibration import create_calibrator
from calikd.calibration.lookup import parse_calibrator_spec, resolve_calibrator
from calikd.engine.evaluate import RunOptions, checkpoint_logits
from calikd.errors import CalikdError, ConfigError, did_you_mean
from calikd.metrics import calibration_report
from calikd.report.columns import RANKING
from calikd.report.ranking import ranking_legend, ranking_table
from calikd.store.checkpoint import checkpoint_id

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CALIBRATIONS",
    "CRITERIA",
    "EVIDENCE",
    "RankedTeacher",
    "TeacherRanking",
    "check_against_students",
    "rank_teachers",
]

# criterion -> True when higher is better
CRITERIA: dict[str, bool] = {"ace": False, "ece": False, "nll": False, "oe": False, "accuracy": True}
CALIBRATIONS = ("none", "temperature", "auto")
EVIDENCE = RANKING.keys  # the metrics shown for every teacher
SPLIT = "val"
STUDENT_METRIC = "student_test_accuracy"
SAME_SPLIT_CAVEAT = (
    "the calibrator was fitted on the same val split it is scored on: calibrated metrics are optimistic "
    "(lower than a fresh split would show)"
)


def check_criterion(criterion: str) -> str:
    """``criterion`` in lower case if it is known, else a :class:`ConfigError` naming the nearest one."""
    criterion = str(criterion).strip().lower()
    if criterion not in CRITERIA:
        raise ConfigError(
            f"unknown ranking criterion '{criterion}'{did_you_mean(str(criterion), CRITERIA)}",
            hint=f"choose from: {', '.join(CRITERIA)}",
        )
    return criterion


@dataclass
class RankedTeacher:
    """One candidate teacher: its val-split evidence and its place in the ranking (1 = best).

    ``metrics`` are the numbers the ranking uses (after the calibrator when one is applied);
    ``uncalibrated`` holds the raw-logit numbers when a calibrator was applied (else ``None``).
    ``calibrator`` describes it: ``method``, ``temperature`` (temperature scaling), ``path`` (a stored one),
    ``fit_split``.
    """

    name: str
    path: str
    checkpoint_id: str
    model: str
    n_samples: int
    metrics: dict[str, Any]
    rank: int = 0
    uncalibrated: dict[str, Any] | None = None
    calibrator: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "name": self.name,
            "path": self.path,
            "checkpoint_id": self.checkpoint_id,
            "model": self.model,
            "n_samples": self.n_samples,
            "metrics": self.metrics,
            "uncalibrated": self.uncalibrated,
            "calibrator": self.calibrator,
        }


@dataclass
class TeacherRanking:
    """Candidate teachers ordered by ``criterion`` on their val split (``rows[0]`` is the predicted best)."""

    criterion: str
    higher_is_better: bool
    calibration: str
    dataset: str
    n_bins: int
    rows: list[RankedTeacher]
    split: str = SPLIT
    notes: list[str] = field(default_factory=list)

    def score(self, row: RankedTeacher) -> float:
        """The criterion value of ``row`` (the number it was ranked by)."""
        return float(row.metrics[self.criterion])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, the notes and every row."""
        return {
            "criterion": self.criterion,
            "higher_is_better": self.higher_is_better,
            "calibration": self.calibration,
            "dataset": self.dataset,
            "split": self.split,
            "n_bins": self.n_bins,
            "notes": list(self.notes),
            "teachers": [r.to_dict() for r in self.rows],
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows of the ranking table (:func:`calikd.report.ranking.ranking_table`)."""
        return ranking_table(self.to_dict())

    def legend(self) -> str:
        """One line saying what the marked column is and which way is better."""
        return ranking_legend(self.to_dict())


def _display_names(paths: Sequence[str]) -> list[str]:
    """Short distinct names: the fewest trailing path parts that tell the checkpoints apart.

    A run folder is named by the folder (``runs/t1`` -> ``t1``); a bare ``last`` / ``best`` stem keeps its
    folder (``runs/t1/last`` -> ``t1/last``).
    """
    parts = [Path(str(p).removesuffix(".safetensors").removesuffix(".json")).parts for p in paths]
    least = [2 if p and p[-1] in ("last", "best") else 1 for p in parts]
    for extra in range(max(len(p) for p in parts)):
        names = ["/".join(p[-(n + extra) :]) for p, n in zip(parts, least, strict=True)]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def rank_teachers(
    checkpoints: Sequence[str | Path],
    *,
    dataset: str | None = None,
    criterion: str = "ace",
    calibration: str = "none",
    n_bins: int = 15,
    **run: Unpack[RunOptions],
) -> TeacherRanking:
    """Measure each checkpoint on its own held-out val split and rank them by ``criterion``.

    For every checkpoint: accuracy, NLL, ECE, ACE, over-confidence error (OE), entropy and the rest of
    :meth:`calikd.metrics.CalibrationReport.scalars` on the val split (never test). ``criterion`` is one of
    :data:`CRITERIA`: lower ACE / ECE / NLL / OE ranks first, higher accuracy ranks first; ties share a rank.

    ``calibration``: ``"none"``, ``"temperature"`` (temperature scaling fitted on val and scored on the same
    val split: **optimistic**, the calibrated errors are biased low; the ranking's ``notes`` say so) or
    ``"auto"`` (the calibrator stored next to each checkpoint by ``calikd calibrate``). ``run``: how each
    checkpoint runs over its data (see :func:`calikd.engine.evaluate.checkpoint_logits`).

    All checkpoints must be for the same dataset and number of classes (:class:`ConfigError` otherwise);
    checkpoints whose val splits differ (another split seed, val fraction or dataset options) are ranked
    with a warning, since their numbers come from different samples. Needs at least two checkpoints.
    """
    criterion = check_criterion(criterion)
    spec = parse_calibrator_spec(calibration, keywords=CALIBRATIONS, paths=False)
    paths = [str(p) for p in checkpoints]
    if len(paths) < 2:
        raise ConfigError(
            f"ranking needs at least 2 teacher checkpoints; got {len(paths)}",
            hint="pass every candidate teacher: calikd rank-teachers CKPT CKPT [CKPT ...]",
        )
    ids = [checkpoint_id(p) for p in paths]  # fails early, naming the first missing checkpoint
    seen: dict[str, str] = {}
    for path, cid in zip(paths, ids, strict=True):
        if cid in seen:
            raise ConfigError(
                f"'{seen[cid]}' and '{path}' hold the same weights (checkpoint {cid})",
                hint="pass each candidate teacher once",
            )
        seen[cid] = path
    names = _display_names(paths)

    rows: list[RankedTeacher] = []
    notes: list[str] = []
    first: tuple[str, str, int, torch.Tensor] | None = None  # (path, dataset, classes, val labels)
    split_differs = False
    for path, cid, name in zip(paths, ids, names, strict=True):
        calibrator, calibrator_path = resolve_calibrator(path, spec) if spec.kind == "auto" else (None, None)
        out = checkpoint_logits(path, (SPLIT,), dataset=dataset, **run)
        logits, labels = out.logits[SPLIT]
        classes = int(out.meta["num_classes"])
        if first is None:
            first = (path, out.dataset, classes, labels)
        elif (out.dataset, classes) != first[1:3]:
            raise ConfigError(
                f"teachers for different tasks: '{first[0]}' is for {first[1]} ({first[2]} classes), "
                f"'{path}' for {out.dataset} ({classes} classes)",
                hint="rank only candidate teachers of one dataset (or pass --dataset to evaluate all on it)",
            )
        elif not torch.equal(labels, first[3]):
            split_differs = True
        if len(labels) == 0:
            raise ConfigError(
                f"the val split of checkpoint '{path}' is empty (trained with val_fraction=0?)",
                hint="rank teachers trained with a held-out validation split (e.g. --val-fraction 0.1)",
            )
        raw = calibration_report(logits, labels, n_bins=n_bins).scalars()
        row = RankedTeacher(
            name=name,
            path=path,
            checkpoint_id=cid,
            model=str(out.meta.get("model", {}).get("name", "?")),
            n_samples=len(labels),
            metrics=raw,
        )
        if spec.kind == "temperature":
            try:
                calibrator = create_calibrator("temperature").fit(logits, labels, split=SPLIT)
            except CalikdError as exc:
                raise type(exc)(f"temperature scaling of '{path}' on val: {exc.message}", exc.hint) from exc
            row.calibrator = {
                "method": "temperature",
                "temperature": float(calibrator.record["params"]["temperature"]),
                "fit_split": SPLIT,
            }
        elif calibrator is not None:
            params = calibrator.record.get("params", {})
            row.calibrator = {
                "method": calibrator.record.get("method"),
                "path": str(calibrator_path),
                "fit_split": calibrator.record.get("split"),
                **({"temperature": float(params["temperature"])} if "temperature" in params else {}),
            }
        if calibrator is not None:
            row.uncalibrated = raw
            row.metrics = calibration_report(calibrator.transform(logits), labels, n_bins=n_bins).scalars()
        rows.append(row)

    assert first is not None
    if any(r.calibrator and r.calibrator.get("fit_split") == SPLIT for r in rows):
        notes.append(SAME_SPLIT_CAVEAT)
    if split_differs:
        message = (
            "the teachers hold out different val splits (split seed, val fraction or dataset options "
            "differ): their metrics come from different samples"
        )
        warnings.warn(message, stacklevel=2)
        notes.append(message)
    higher = CRITERIA[criterion]
    for r in rows:
        value = r.metrics.get(criterion)
        if value is None or not math.isfinite(value):
            raise ConfigError(f"teacher '{r.path}' has no finite {criterion} on val ({value!r})")
    rows.sort(
        key=lambda r: -r.metrics[criterion] if higher else r.metrics[criterion]
    )  # stable: ties keep order
    for i, r in enumerate(rows):
        tied = i > 0 and rows[i - 1].metrics[criterion] == r.metrics[criterion]
        r.rank = rows[i - 1].rank if tied else i + 1
    return TeacherRanking(
        criterion=criterion,
        higher_is_better=higher,
        calibration=str(spec),
        dataset=first[1],
        n_bins=n_bins,
        rows=rows,
        notes=notes,
    )


def _competition_ranks(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1 = best; ties share the best rank of their group."""
    signed = [v if higher_is_better else -v for v in values]
    return [1 + sum(other > v for other in signed) for v in signed]


def check_against_students(
    ranking: TeacherRanking,
    store: Any,
    *,
    sweep: str | None = None,
    student: str | None = None,
    method: str | None = None,
    calibration: str | None = "none",
) -> dict[str, Any]:
    """Compare the predicted ranking with the students actually distilled from the ranked teachers.

    ``store`` is a :class:`calikd.results.ResultsStore`. A run counts for a teacher when it is a
    finished ``distill`` run whose ``hashes["teacher"]`` is that teacher's checkpoint id, with a recorded
    ``student_test_accuracy``, and it passes the optional filters: ``sweep``, ``student`` (model name),
    ``method`` and ``calibration`` (the run's ``teacher_calibration``; ``None`` takes any). Each teacher's
    observed result is the mean student test accuracy over its runs (usually one per seed).

    Agreement (:func:`calikd.analysis.rank_agreement`) is oriented so that +1 means the criterion orders the
    teachers exactly as their students did (a lower ACE predicting a higher student accuracy); with three or
    more teachers :func:`calikd.analysis.correlate` adds Pearson r / R^2 of student accuracy against the
    criterion value (a negative r is the expected sign for ACE, ECE, NLL and OE).

    Returns a JSON-ready dict: ``teachers`` (every ranked teacher with ``student_accuracy``, ``n_runs``,
    ``seeds``, ``observed_rank``; ``None`` / 0 without students), ``teachers_matched``, ``spearman_rho``,
    ``kendall_tau``, ``top1_agreement``, ``predicted_top``, ``observed_top`` (teacher names),
    ``correlation``, ``pooled`` (the distinct student / method / teacher-calibration settings averaged over)
    and ``message`` (``None`` when the agreement was computed, else why not, e.g. fewer than 2 teachers with
    students).
    """
    by_id = {r.checkpoint_id: r for r in ranking.rows}
    runs: dict[str, list[Any]] = {cid: [] for cid in by_id}
    for run in store.list_runs(sweep=sweep, status="finished", kind="distill"):
        teacher = run.hashes.get("teacher")
        config: Mapping[str, Any] = run.config
        if teacher not in by_id or run.metrics.get(STUDENT_METRIC) is None:
            continue
        if student is not None and config.get("student") != student:
            continue
        if method is not None and config.get("method") != method:
            continue
        if calibration is not None and config.get("teacher_calibration", "auto") != calibration:
            continue
        runs[teacher].append(run)

    teachers = []
    for r in ranking.rows:
        found = runs[r.checkpoint_id]
        accs = [float(run.metrics[STUDENT_METRIC]) for run in found]
        teachers.append(
            {
                "name": r.name,
                "checkpoint_id": r.checkpoint_id,
                "predicted_rank": r.rank,
                "score": ranking.score(r),
                "student_accuracy": statistics.fmean(accs) if accs else None,
                "student_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else None,
                "n_runs": len(accs),
                "seeds": sorted({run.config.get("seed") for run in found}, key=str),
                "observed_rank": None,
            }
        )
    matched = [t for t in teachers if t["n_runs"] > 0]
    settings = {
        (run.config.get("student"), run.config.get("method"), run.config.get("teacher_calibration"))
        for found in runs.values()
        for run in found
    }
    result: dict[str, Any] = {
        "criterion": ranking.criterion,
        "filters": {"sweep": sweep, "student": student, "method": method, "calibration": calibration},
        "teachers": teachers,
        "teachers_matched": len(matched),
        "n_runs": sum(t["n_runs"] for t in teachers),
        "pooled": [
            {"student": s, "method": m, "teacher_calibration": c}
            for s, m, c in sorted(settings, key=lambda x: tuple(map(str, x)))
        ],
        "spearman_rho": None,
        "kendall_tau": None,
        "top1_agreement": None,
        "predicted_top": [],
        "observed_top": [],
        "correlation": None,
        "message": None,
    }
    if len(matched) < 2:
        result["message"] = (
            f"{len(matched)} of the {len(teachers)} ranked teachers have finished students"
            f"{_filters_text(result['filters'])}: an agreement needs at least 2"
        )
        return result
    observed = [t["student_accuracy"] for t in matched]
    for t, rank in zip(matched, _competition_ranks(observed, True), strict=True):
        t["observed_rank"] = rank
    scores = [t["score"] for t in matched]
    try:
        agreement = rank_agreement(
            scores,
            observed,
            predicted_higher_is_better=ranking.higher_is_better,
            observed_higher_is_better=True,
        )
    except ConfigError as exc:
        result["message"] = f"no rank agreement: {exc.message}"
        return result
    result.update(
        spearman_rho=agreement.spearman_rho,
        kendall_tau=agreement.kendall_tau,
        top1_agreement=agreement.top1_agreement,
        predicted_top=[matched[i]["name"] for i in agreement.predicted_top],
        observed_top=[matched[i]["name"] for i in agreement.observed_top],
    )
    if len(matched) >= 3:
        try:
            result["correlation"] = correlate(scores, observed).to_dict()
        except ConfigError as exc:
            result["correlation_message"] = exc.message
    return result


def _filters_text(filters: Mapping[str, Any]) -> str:
    shown = [f"{k}={v}" for k, v in filters.items() if v is not None]
    return f" ({', '.join(shown)})" if shown else ""
