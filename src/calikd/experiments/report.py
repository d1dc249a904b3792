"""``calikd report``: a sweep's results (or one distillation run's) as Markdown and self-contained HTML.

For a sweep: the teachers' calibration before and after temperature scaling; every student configuration
as mean ± std over seeds; the correlation of each teacher metric with student accuracy (Pearson r,
Spearman rho, R^2 with bootstrap CIs); calibrated vs uncalibrated teachers as paired differences over
seeds; student accuracy/ECE vs the distillation temperature and vs the student's resolution; augmentations
side by side; and reliability diagrams of the teachers and of some students.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from calikd.analysis import correlate, paired_difference, rank_agreement
from calikd.errors import ConfigError
from calikd.experiments.overhead import timing_paragraph
from calikd.experiments.protocol import teacher_checks
from calikd.experiments.spec import parse_floors
from calikd.report import (
    MarkdownDoc,
    ScatterPoint,
    format_mean_std,
    grouped_bars,
    metric_curves,
    scatter_with_fit,
    write_report,
)
from calikd.results import ResultsStore, RunRecord
from calikd.utils.run_lock import hold_run_dir, locks_run_dir

TEACHER_METRICS = ("accuracy", "nll", "ece", "ace", "oe")
STUDENT_METRICS = ("accuracy", "ece", "ace", "nll", "entropy")
GROUP_KEYS = (
    "teacher",
    "student",
    "method",
    "method_options",
    "teacher_calibration",
    "kd_augment",
    "student_resolution",
    "teacher_input",
    "tau",
)


def _mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else float("nan")


def _cell(values: Iterable[float | None], digits: int = 4) -> str:
    return format_mean_std(*_mean_std(values), digits=digits)


class SweepResults:
    """The finished runs of one sweep, joined: teachers (from calibrate runs) and student groups."""

    def __init__(self, runs: list[RunRecord]) -> None:
        self.runs = runs
        self.calibrations = [r for r in runs if r.kind == "calibrate" and r.status == "finished"]
        self.teacher_names = {
            r.config["checkpoint"]: r.name.removesuffix("-calibrate") for r in self.calibrations
        }
        self.teachers = {r.config["checkpoint"]: r for r in self.calibrations}
        # the training runs of the sweep's own teachers, by the checkpoint their calibrate run reads
        self.teacher_runs = {
            f"{r.out_dir}/last": r
            for r in runs
            if r.kind == "teacher" and r.status == "finished" and r.out_dir
        }
        self.students = [r for r in runs if r.kind == "distill" and r.status == "finished"]
        groups: dict[tuple, list[RunRecord]] = defaultdict(list)
        for run in self.students:
            groups[tuple(_freeze(run.config.get(k)) for k in GROUP_KEYS)].append(run)
        self.groups = dict(groups)
        # robustness runs (sweeps with `robustness`): joined onto the runs they evaluate
        robust = {r.config["of"]: r for r in runs if r.kind == "robustness" and r.status == "finished"}
        self.robustness_runs = list(robust.values())
        for run in self.students:
            if run.run_id in robust:
                run.metrics.update({f"student_{k}": v for k, v in robust[run.run_id].metrics.items()})
        self.teacher_robustness = {
            r.config["checkpoint"]: robust[r.run_id].metrics for r in self.calibrations if r.run_id in robust
        }

    def teacher_name(self, path: str | None) -> str:
        return "—" if path is None else self.teacher_names.get(path, Path(path).parent.name)

    def label(self, key: tuple) -> str:
        cfg = dict(zip(GROUP_KEYS, key, strict=True))
        parts = [
            self.teacher_name(cfg["teacher"]) if cfg["teacher"] else "alone",
            cfg["student"],
            cfg["method"],
        ]
        if cfg["teacher"]:
            parts.append(f"cal={cfg['teacher_calibration']}")
        if cfg["kd_augment"] != "none":
            parts.append(cfg["kd_augment"])
        if cfg["tau"] is not None:
            parts.append(f"tau={cfg['tau']:g}")
        if cfg["student_resolution"] is not None:
            parts.append(f"res={cfg['student_resolution']:g} ({cfg['teacher_input']})")
        return ", ".join(str(p) for p in parts)

    def values(self, key: tuple, metric: str) -> list[float | None]:
        """``metric`` of the group's students: test metric (``ece``) or robustness metric (``corrupt_ece``)"""
        name = f"student_{metric}" if metric.startswith(("corrupt_", "clean_")) else f"student_test_{metric}"
        return [r.metrics.get(name) for r in self.groups[key]]


def _freeze(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _yes_no(flag: float | None) -> str:
    return "—" if flag is None else "yes" if flag else "**no**"


def _teacher_section(doc: MarkdownDoc, results: SweepResults, floors: dict[str, float]) -> None:
    if not results.calibrations:
        return
    doc.heading("Teachers", 2)
    doc.paragraph(
        "Each teacher on its held-out val split and on test, raw and after temperature scaling fitted on "
        "val. Converged: its learning rate annealed and its val accuracy settled over the last epochs "
        "(see `calikd.engine.convergence`). Floor: the least test accuracy the sweep asks of it "
        "(`teacher_floors`); a teacher below it is flagged."
    )
    rows, flagged = [], []
    for path, check in teacher_checks(results, floors).items():
        m = results.teachers[path].metrics
        if check.below or check.converged == 0:
            flagged.append(check.name)
        rows.append(
            [
                check.name,
                *(m.get(f"test_raw_{k}") for k in TEACHER_METRICS),
                m.get("val_raw_ace"),
                m.get("temperature"),
                m.get("test_cal_ece"),
                m.get("test_cal_ace"),
                _yes_no(check.converged),
                "—"
                if check.floor is None
                else f"{check.floor:.3g}" + (" **below**" if check.below else " met"),
            ]
        )
    doc.table(
        [
            "teacher",
            *(f"test {k}" for k in TEACHER_METRICS),
            "val ace",
            "T",
            "test ece (cal)",
            "test ace (cal)",
            "converged",
            "floor",
        ],
        rows,
    )
    if flagged:
        doc.paragraph(
            f"**Flagged teachers** (below their floor or not converged): {', '.join(flagged)}. "
            "Claims that rest on them are weaker than the numbers suggest."
        )
    for run in results.calibrations:
        if "reliability" in run.artifacts and Path(run.artifacts["reliability"]).exists():
            doc.image(
                run.artifacts["reliability"],
                f"reliability of teacher {results.teacher_name(run.config['checkpoint'])}",
            )


def _converged_cell(runs: list[RunRecord]) -> str:
    flags = [r.metrics.get("converged") for r in runs]
    known = [f for f in flags if f is not None]
    if not known:
        return "—"
    done = sum(1 for f in known if f)
    return f"{done}/{len(known)}" if done == len(known) else f"**{done}/{len(known)}**"


def _students_section(doc: MarkdownDoc, results: SweepResults) -> None:
    doc.heading("Students", 2)
    doc.paragraph(
        "Test metrics at the last epoch, mean ± std over seeds (n = number of seeds); converged: how many of "
        "the n runs passed the convergence check (learning rate annealed, val accuracy settled)."
    )
    rows = [
        [
            results.label(key),
            len(runs),
            _converged_cell(runs),
            *(_cell(results.values(key, m)) for m in STUDENT_METRICS),
        ]
        for key, runs in sorted(results.groups.items(), key=lambda kv: results.label(kv[0]))
    ]
    doc.table(["configuration", "n", "converged", *STUDENT_METRICS], rows)
    unconverged = [r for r in results.students if r.metrics.get("converged") == 0]
    if unconverged:
        doc.paragraph(
            f"**{len(unconverged)} of {len(results.students)} students did not converge**: more epochs, or a "
            "schedule that anneals, before drawing conclusions from them."
        )


def _correlation_section(doc: MarkdownDoc, results: SweepResults, out_dir: Path) -> None:
    """Teacher metric vs mean student accuracy, per setting (student, method, augmentation, ...) with at
    least 3 teachers; for students of calibrated teachers the teacher's metric after calibration."""
    settings: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for key in results.groups:
        cfg = dict(zip(GROUP_KEYS, key, strict=True))
        if not cfg["teacher"] or cfg["teacher"] not in results.teachers:
            continue
        setting = tuple(v for k, v in cfg.items() if k not in ("teacher", "teacher_calibration"))
        mean = _mean_std(results.values(key, "accuracy"))[0]
        if not math.isnan(mean):
            settings[setting][cfg["teacher_calibration"]][cfg["teacher"]] = mean
    usable = {s: c for s, c in settings.items() if any(len(t) >= 3 for t in c.values())}
    if not usable:
        return
    doc.heading("Does teacher calibration predict teaching quality?", 2)
    doc.paragraph(
        "Each teacher's test metric against the mean test accuracy of the students it taught (for students "
        "of calibrated teachers, the teacher's metric after calibration); R² with its 95% bootstrap interval."
    )
    rows = []
    for n, (setting, by_calibration) in enumerate(usable.items()):
        label = ", ".join(str(v) for v in setting if v not in (None, "none", "full", "{}"))
        for metric in TEACHER_METRICS:
            points = []
            for calibration, accuracies in by_calibration.items():
                kind = "raw" if calibration == "none" else "cal"
                xs = [results.teachers[p].metrics.get(f"test_{kind}_{metric}") for p in accuracies]
                ys = list(accuracies.values())
                points += [
                    ScatterPoint(
                        x, y, label=results.teacher_name(p), group=f"teacher calibration: {calibration}"
                    )
                    for x, y, p in zip(xs, ys, accuracies, strict=True)
                    if x is not None
                ]
                if len(accuracies) < 3 or any(x is None for x in xs):
                    continue
                try:
                    c = correlate(xs, ys, n_boot=1000)
                except ConfigError as exc:
                    rows.append([label, calibration, f"teacher {metric}", exc.message, "", "", ""])
                    continue
                ci = f" [{c.r2_ci[0]:.2f}, {c.r2_ci[1]:.2f}]" if c.r2_ci else ""
                rows.append(
                    [
                        label,
                        calibration,
                        f"teacher {metric}",
                        f"{c.pearson_r:.3f}",
                        f"{c.spearman_rho:.3f}",
                        f"{c.r2:.3f}{ci}",
                        f"{c.p_value:.3g}",
                    ]
                )
            if metric in ("ace", "accuracy") and len({p.x for p in points}) >= 2:
                png = out_dir / f"teacher_{metric}_vs_student_accuracy_{n}.png"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scatter_with_fit(
                        points,
                        png,
                        x_label=f"teacher {metric.upper() if metric == 'ace' else metric} (test)",
                        y_label="student accuracy (test, mean over seeds)",
                        title=f"teacher {metric} vs student accuracy ({label})",
                    )
                doc.image(png, f"teacher {metric} vs student accuracy ({label})")
    if rows:
        doc.table(
            ["setting", "teacher calibration", "predictor", "pearson r", "spearman rho", "R² [95% CI]", "p"],
            rows,
        )


def _ranking_section(doc: MarkdownDoc, results: SweepResults) -> None:
    """Would ranking the teachers by their val ACE (before distilling) have picked the best teachers?"""
    rows = []
    for key_setting, accuracies in _uncalibrated_settings(results).items():
        paths = [p for p in accuracies if results.teachers[p].metrics.get("val_raw_ace") is not None]
        if len(paths) < 2:
            continue
        predicted = [results.teachers[p].metrics["val_raw_ace"] for p in paths]
        observed = [accuracies[p] for p in paths]
        try:
            agreement = rank_agreement(predicted, observed, predicted_higher_is_better=False)
        except ConfigError as exc:
            rows.append([key_setting, len(paths), exc.message, "", "", ""])
            continue
        best = results.teacher_name(paths[min(range(len(paths)), key=predicted.__getitem__)])
        rows.append(
            [
                key_setting,
                len(paths),
                f"{agreement.spearman_rho:+.3f}",
                f"{agreement.kendall_tau:+.3f}",
                "yes" if agreement.top1_agreement else "no",
                best,
            ]
        )
    if rows:
        doc.heading("Ranking teachers by val ACE before distilling", 2)
        doc.paragraph(
            "What `calikd rank-teachers` predicts (lower val ACE = better teacher) against the students "
            "obtained from uncalibrated teachers; +1 is perfect agreement."
        )
        doc.table(
            ["setting", "teachers", "spearman rho", "kendall tau", "top-1 right", "predicted best"], rows
        )


def _uncalibrated_settings(results: SweepResults) -> dict[str, dict[str, float]]:
    """Per setting (student, method, augmentation, ...): mean student accuracy per uncalibrated teacher."""
    settings: dict[str, dict[str, float]] = defaultdict(dict)
    for key in results.groups:
        cfg = dict(zip(GROUP_KEYS, key, strict=True))
        if (
            not cfg["teacher"]
            or cfg["teacher"] not in results.teachers
            or cfg["teacher_calibration"] != "none"
        ):
            continue
        label = ", ".join(
            str(v) for k, v in cfg.items() if k not in ("teacher", "teacher_calibration") and v not in _QUIET
        )
        mean = _mean_std(results.values(key, "accuracy"))[0]
        if not math.isnan(mean):
            settings[label][cfg["teacher"]] = mean
    return settings


_QUIET = (None, "none", "full", "{}")


def _paired_section(doc: MarkdownDoc, results: SweepResults) -> None:
    """Calibrated minus uncalibrated teacher, same everything else and same seed."""
    pairs: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    index = {}
    for run in results.students:
        cfg = run.config
        if not cfg.get("teacher"):
            continue
        key = (*(_freeze(cfg.get(k)) for k in GROUP_KEYS if k != "teacher_calibration"), cfg.get("seed"))
        index[(key, cfg.get("teacher_calibration"))] = run
    for (key, calibration), run in index.items():
        if calibration == "none":
            continue
        base = index.get((key, "none"))
        if base is None:
            continue
        m0, m1 = base.metrics, run.metrics
        pairs[calibration].append(
            (
                m0.get("student_test_accuracy"),
                m1.get("student_test_accuracy"),
                m0.get("student_test_ece"),
                m1.get("student_test_ece"),
            )
        )
    if not pairs:
        return
    doc.heading("Calibrated vs uncalibrated teacher", 2)
    doc.paragraph(
        "Paired over every (teacher, student, method, augmentation, seed): calibrated minus uncalibrated; "
        "95% t-interval; MDE: the smallest true difference these pairs detect with 80% power (a "
        "non-significant difference smaller than the MDE means too few runs to tell, not no effect)."
    )
    rows = []
    for calibration, values in pairs.items():
        for i, metric in ((0, "accuracy"), (2, "ece")):
            a = [v[i] for v in values]
            b = [v[i + 1] for v in values]
            if len(a) < 2:
                rows.append([calibration, metric, len(a), f"{b[0] - a[0]:+.4f}", "", "", "", ""])
                continue
            d = paired_difference(a, b, higher_is_better=metric == "accuracy")
            rows.append(
                [
                    calibration,
                    metric,
                    d.n,
                    f"{d.mean:+.4f}",
                    f"[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]",
                    f"{d.p_value:.3g}",
                    f"{d.mde:.4f}",
                    f"{d.wins}/{d.losses}/{d.ties}",
                ]
            )
    doc.table(
        [
            "teacher calibration",
            "student metric",
            "pairs",
            "mean difference",
            "95% CI",
            "p",
            "MDE (80% power)",
            "wins/losses/ties",
        ],
        rows,
    )


def _effective_tau(cfg: dict[str, Any]) -> float | None:
    """The distillation temperature a run used: its tau, else its method's option or default."""
    if cfg.get("tau") is not None:
        return float(cfg["tau"])
    options = json.loads(cfg["method_options"]) if isinstance(cfg.get("method_options"), str) else {}
    for key in ("tau", "temperature"):  # 'temperature': the old spelling of the method option 'tau'
        if key in options:
            return float(options[key])
    from calikd.distill import distiller_info

    default = distiller_info(cfg["method"])["options"].get("tau", {}).get("default")
    return None if default is None else float(default)


def _curves_section(doc: MarkdownDoc, results: SweepResults, out_dir: Path, along: str, label: str) -> None:
    def x_of(cfg: dict[str, Any]) -> float | None:
        if along == "tau":
            return (
                _effective_tau({**cfg, "method_options": cfg.get("method_options")})
                if cfg["teacher"]
                else None
            )
        return None if cfg[along] is None else float(cfg[along])

    configs = [dict(zip(GROUP_KEYS, k, strict=True)) for k in results.groups]
    if len({x_of(c) for c in configs} - {None}) < 2:
        return
    doc.heading(f"Students vs {label}", 2)
    for metric in ("accuracy", "ece"):
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for key in results.groups:
            cfg = dict(zip(GROUP_KEYS, key, strict=True))
            x = x_of(cfg)
            if x is None:
                continue
            name = ", ".join(
                str(v)
                for k, v in cfg.items()
                if k not in (along, "student", "teacher") and v not in (None, "none")
            )
            name = f"{results.teacher_name(cfg['teacher'])}: {name}" if cfg["teacher"] else name
            mean, std = _mean_std(results.values(key, metric))
            series[name].append((x, mean, 0.0 if math.isnan(std) else std))
        png = out_dir / f"student_{metric}_vs_{along}.png"
        metric_curves(
            series,
            png,
            x_label=label,
            y_label=f"student {metric} (test)",
            title=f"student {metric} vs {label}",
        )
        doc.image(png, f"student {metric} vs {label}")


def _augment_section(
    doc: MarkdownDoc,
    results: SweepResults,
    out_dir: Path,
    metrics: tuple[str, ...] = ("accuracy", "ece"),
    heading: str | None = "Augmentation inside KD",
) -> None:
    augments = {dict(zip(GROUP_KEYS, k, strict=True))["kd_augment"] for k in results.groups}
    if len(augments) < 2:
        return
    if heading:
        doc.heading(heading, 2)
    for metric in metrics:
        groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        for key in results.groups:
            cfg = dict(zip(GROUP_KEYS, key, strict=True))
            series = (
                f"{cfg['method']} (cal={cfg['teacher_calibration']})" if cfg["teacher"] else cfg["method"]
            )
            mean, std = _mean_std(results.values(key, metric))
            groups[cfg["kd_augment"]][series] = (mean, 0.0 if math.isnan(std) else std)
        png = out_dir / f"augment_{metric}.png"
        shown = metric.replace("corrupt_", "") + (
            " under corruption" if metric.startswith("corrupt_") else ""
        )
        grouped_bars(
            groups,
            png,
            y_label=f"student {shown} (test)",
            title=f"student {shown} by augmentation",
            x_label="augmentation",
        )
        doc.image(png, f"student {shown} by augmentation")


def _robustness_section(doc: MarkdownDoc, results: SweepResults, out_dir: Path) -> None:
    if not results.robustness_runs:
        return
    doc.heading("Under corruption", 2)
    corrupt = next((r for r in results.runs if r.kind == "corrupt"), None)
    if corrupt is not None:
        cfg = corrupt.config
        subset = f"a stratified subset of {cfg['test_subset']}" if cfg.get("test_subset") else "all"
        doc.paragraph(
            f"Mean over {len(cfg['corruptions'])} corruptions x 5 severities of {subset} test images "
            f"(seed {cfg['seed']}, {cfg['table']} severity table); clean = the full test split. Raw logits "
            "(no calibrator). Mean ± std over seeds."
        )
    head = [
        "model",
        "n",
        "clean accuracy",
        "corrupted accuracy",
        "clean ece",
        "corrupted ece",
        "corrupted nll",
    ]
    rows = []
    for path, m in results.teacher_robustness.items():
        rows.append(
            [f"teacher {results.teacher_name(path)}", 1]
            + [_cell([m.get(k)]) for k in ("clean_accuracy", "corrupt_accuracy", "clean_ece", "corrupt_ece")]
            + [_cell([m.get("corrupt_nll")])]
        )
    for key, _ in sorted(results.groups.items(), key=lambda kv: results.label(kv[0])):
        values = [results.values(key, k) for k in ("clean_accuracy", "corrupt_accuracy", "clean_ece")]
        values += [results.values(key, "corrupt_ece"), results.values(key, "corrupt_nll")]
        n = sum(v is not None for v in values[1])
        if n:
            rows.append([results.label(key), n, *(_cell(v) for v in values)])
    doc.table(head, rows)
    _augment_section(doc, results, out_dir, ("corrupt_accuracy", "corrupt_ece"), heading=None)


def _student_reliability(doc: MarkdownDoc, results: SweepResults, limit: int = 6) -> None:
    shown = 0
    for key, runs in sorted(results.groups.items(), key=lambda kv: results.label(kv[0])):
        png = Path(runs[0].out_dir or "") / "reliability.png"
        if runs[0].out_dir and png.exists() and shown < limit:
            if shown == 0:
                doc.heading("Reliability diagrams", 2)
                doc.paragraph(
                    "Teacher (uncalibrated, calibrated) and student on test, first seed of each "
                    "configuration."
                )
            doc.paragraph(f"**{results.label(key)}**")
            doc.image(png, results.label(key))
            shown += 1


@locks_run_dir
def sweep_report(
    db_path: str,
    sweep: str,
    out_dir: str | Path,
    *,
    preface: Callable[[MarkdownDoc, SweepResults], None] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (with PNG plots) for ``sweep`` into ``out_dir``;
    ``preface(doc, results)`` adds sections first (a reproduction's claim and numbers)."""
    with ResultsStore(db_path, create=False) as store:
        runs = store.list_runs(sweep=sweep)
        counts = store.status_counts(sweep=sweep)
        spec = next((s.spec for s in store.sweeps() if s.name == sweep), None)
    out = Path(out_dir)
    hold_run_dir(out)  # one writer at a time; creates it
    results = SweepResults(runs)
    doc = MarkdownDoc().heading(f"Sweep `{sweep}`", 1)
    doc.paragraph(
        f"{len(runs)} runs in `{db_path}`: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
    )
    timing = timing_paragraph(runs, (spec or {}).get("out"))
    if timing:
        doc.paragraph(timing)
    if preface is not None:
        preface(doc, results)
    _teacher_section(doc, results, parse_floors((spec or {}).get("teacher_floors")))
    if results.students:
        _students_section(doc, results)
        _correlation_section(doc, results, out)
        _ranking_section(doc, results)
        _paired_section(doc, results)
        _curves_section(doc, results, out, "tau", "distillation temperature")
        _curves_section(doc, results, out, "student_resolution", "student resolution (px or factor)")
        _augment_section(doc, results, out)
        _robustness_section(doc, results, out)
        _student_reliability(doc, results)
    return write_report(doc, out, "report", title=f"calikd sweep {sweep}")


@locks_run_dir
def run_report(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Markdown + HTML for one distillation run folder (from its ``report.json``)."""
    folder = Path(run_dir)
    path = folder / "report.json"
    if not path.exists():
        raise ConfigError(
            f"'{run_dir}' holds no report.json (not a finished distillation run)",
            hint="give a run folder written by `calikd distill`, or a sweep name with --db",
        )
    hold_run_dir(out_dir or folder)  # not while the run (or another report) writes there
    data = json.loads(path.read_text())
    doc = MarkdownDoc().heading(f"Distillation run `{folder}`", 1)
    extra = data.get("extra", {})
    doc.paragraph(
        f"method {extra.get('method')}, options `{extra.get('method_options')}`, "
        f"dataset {extra.get('dataset')}"
    )
    rows = [
        ["student, last epoch", *(data["student_test_last"].get(m) for m in STUDENT_METRICS)],
        [
            f"student, best on val (epoch {data['best_epoch']})",
            *(data["student_test_best"].get(m) for m in STUDENT_METRICS),
        ],
    ]
    teacher = data.get("teacher") or {}
    for kind, values in (teacher.get("metrics", {}).get("full", {}).get("test", {})).items():
        rows.append(
            [
                f"teacher, {'uncalibrated' if kind == 'raw' else 'calibrated'}",
                *(values.get(m) for m in STUDENT_METRICS),
            ]
        )
    doc.table(["model (test)", *STUDENT_METRICS], rows)
    if (folder / "reliability.png").exists():
        doc.image(folder / "reliability.png", "reliability diagrams on the test split")
    return write_report(doc, out_dir or folder, "summary", title=f"calikd run {folder.name}")
