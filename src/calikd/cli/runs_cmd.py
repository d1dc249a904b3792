"""``calikd runs list|show|export|spec``: the runs recorded in a results database (default runs/calikd.db),
and the sweep file each sweep was run from."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.spec import recorded_file
from calikd.report.text import format_table
from calikd.results import (
    DEFAULT_DB_PATH,
    STATUSES,
    ResultsStore,
    RunRecord,
    export_csv,
)
from calikd.results.format import flatten
from calikd.utils.io import atomic_write

# Metric columns `runs list` prefers, in this order, when --metrics is not given.
KEY_METRICS = ("accuracy", "acc", "ece", "nll")
MAX_METRIC_COLUMNS = 4


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("runs", help="list, show and export recorded runs", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    lister = actions.add_parser("list", help="a table of the recorded runs")
    _add_db(lister)
    _add_filters(lister)
    lister.add_argument(
        "--metrics",
        metavar="NAME,...",
        help=f"metric columns (default: up to {MAX_METRIC_COLUMNS}, accuracy, ece and nll first)",
    )
    lister.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one run: config, hashes, metrics, artifacts, timings")
    show.add_argument("run", metavar="RUN_ID", help="a run id, a unique prefix of one, or a unique run name")
    _add_db(show)
    show.add_argument("--json", action="store_true", help="print the run as JSON")
    show.set_defaults(handler=run_show)

    export = actions.add_parser("export", help="write the recorded runs as CSV")
    export.add_argument(
        "--csv",
        required=True,
        metavar="OUT.csv",
        help="output file, written atomically ('-' for stdout): one row per run, one column per "
        "flattened config key (config.a.b), hash and metric",
    )
    _add_db(export)
    _add_filters(export)
    export.set_defaults(handler=run_export)

    spec = actions.add_parser("spec", help="the sweep file a recorded sweep was run from (YAML)")
    spec.add_argument("sweep", metavar="SWEEP", help="the sweep's name")
    _add_db(spec)
    spec.add_argument("--out", metavar="FILE.yaml", help="write it here (atomically) instead of printing it")
    spec.set_defaults(handler=run_spec)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB_PATH, metavar="PATH", help=f"results database (default {DEFAULT_DB_PATH})"
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep", help="only the runs of this sweep")
    parser.add_argument("--status", choices=STATUSES, help="only the runs in this status")
    parser.add_argument("--kind", help="only runs of this kind (teacher, calibrate, distill, ...)")


def _select(store: ResultsStore, args: argparse.Namespace) -> list[RunRecord]:
    return store.list_runs(sweep=args.sweep, status=args.status, kind=args.kind)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _status(run: RunRecord, now: float) -> str:
    return "running (stale)" if run.is_stale(now=now) else run.status


def pick_metrics(runs: Sequence[RunRecord], requested: str | None, known: Sequence[str]) -> list[str]:
    """The metric columns of ``runs list``: those asked for, or the key metrics the runs have.

    ``known`` are the metric names of the whole database: asking for another one is a typo.
    """
    if requested:
        wanted = [m.strip() for m in requested.split(",") if m.strip()]
        for m in wanted:
            if m not in known:
                raise ConfigError(
                    f"no run has a metric '{m}'{did_you_mean(m, known)}",
                    hint=f"metrics: {', '.join(known) or '(none yet)'}",
                )
        return wanted
    names = sorted({m for r in runs for m in r.metrics})

    def rank(name: str) -> tuple[int, int, str]:
        lower = name.lower()
        first = next((i for i, key in enumerate(KEY_METRICS) if key in lower), len(KEY_METRICS))
        return first, len(name) if first < len(KEY_METRICS) else 0, name  # 'accuracy' before 'val_accuracy'

    ranked = sorted(names, key=rank)
    # the best match of each key metric first (accuracy, ece, nll), then the others in rank order
    best = {rank(n)[0]: n for n in reversed(ranked) if rank(n)[0] < len(KEY_METRICS)}
    chosen = [best[i] for i in sorted(best)]
    return (chosen + [n for n in ranked if n not in chosen])[:MAX_METRIC_COLUMNS]


def _filters(args: argparse.Namespace) -> str:
    parts = [f"--{k} {getattr(args, k)}" for k in ("sweep", "status", "kind") if getattr(args, k)]
    return f" matching {' '.join(parts)}" if parts else ""


def run_list(args: argparse.Namespace) -> int:
    with ResultsStore(args.db, create=False) as store:
        runs = _select(store, args)
        metrics = pick_metrics(runs, args.metrics, store.metric_names())
    if not runs:
        print(f"no runs in {args.db}{_filters(args)}")
        return 0
    now = time.time()
    rows = []
    for r in runs:
        wall = r.wall_time_s
        if r.status == "running" and r.started_at is not None:
            wall = now - r.started_at
        values = [r.metrics.get(m) for m in metrics]
        shown = [v if isinstance(v, float) else "-" for v in values]
        rows.append([r.short_id, r.sweep or "-", r.kind, r.name, _status(r, now), *shown, _duration(wall)])
    print(format_table(["id", "sweep", "kind", "name", "status", *metrics, "wall"], rows))
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    print(f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {summary}")
    return 0


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _section(title: str, pairs: Iterable[tuple[str, Any]]) -> list[str]:
    pairs = list(pairs)
    if not pairs:
        return [f"{title}: (none)"]
    width = max(len(k) for k, _ in pairs)
    return [f"{title}:"] + [f"  {k.ljust(width)}  {_value(v)}" for k, v in pairs]


def run_show(args: argparse.Namespace) -> int:
    with ResultsStore(args.db, create=False) as store:
        run = store.get(args.run)
    if args.json:
        print(json.dumps(run.to_dict(), indent=2))
        return 0
    now = time.time()
    status = _status(run, now)
    if run.attempts:
        status += f" (attempt {run.attempts}, worker {run.worker})"
    if run.status == "running" and run.heartbeat_at is not None:
        status += f", last heartbeat {_duration(now - run.heartbeat_at)} ago"
    head = [
        ("run", run.run_id),
        ("name", run.name),
        ("kind", run.kind),
        ("status", status),
        ("sweeps", ", ".join(run.sweeps) or "-"),
        ("out_dir", run.out_dir or "-"),
        ("created", _when(run.created_at)),
        ("started", _when(run.started_at)),
        ("finished", _when(run.finished_at)),
        ("wall time", _duration(run.wall_time_s)),
    ]
    width = max(len(k) for k, _ in head)
    lines = [f"{k.ljust(width)}  {v}" for k, v in head]
    if run.error:
        lines += ["error:", *("  " + line for line in run.error.rstrip().splitlines())]
    lines += _section("config", sorted(flatten(run.config).items()))
    lines += _section("hashes", sorted(run.hashes.items()))
    metric_pairs = [(k, "-" if v is None else f"{v:.6g}") for k, v in sorted(run.metrics.items())]
    lines += _section("metrics", metric_pairs)
    lines += _section("artifacts", sorted(run.artifacts.items()))
    print("\n".join(lines))
    return 0


def run_export(args: argparse.Namespace) -> int:
    with ResultsStore(args.db, create=False) as store:
        runs = _select(store, args)
    if args.csv == "-":
        export_csv(sys.stdout, runs)
        return 0
    n = export_csv(args.csv, runs)
    print(f"wrote {n} run{'s' if n != 1 else ''} to {args.csv}")
    return 0


def run_spec(args: argparse.Namespace) -> int:
    with ResultsStore(args.db, create=False) as store:
        known = {s.name: s for s in store.sweeps()}
    if args.sweep not in known:
        raise ConfigError(
            f"no sweep '{args.sweep}' in '{args.db}'{did_you_mean(args.sweep, list(known))}",
            hint="`calikd runs list` shows the sweeps' runs",
        )
    text = yaml.safe_dump(recorded_file(known[args.sweep].spec, args.sweep), sort_keys=False)
    if args.out is None:
        print(text, end="")
        return 0
    with atomic_write(args.out, "w") as handle:
        handle.write(text)
    print(
        f"wrote the sweep file of '{args.sweep}' to {args.out} (run it again with `calikd sweep {args.out}`)"
    )
    return 0
