"""``calikd sweep FILE.yaml``: run a grid of teachers, calibrations and students into the results store."""

from __future__ import annotations

import argparse
from typing import Any

from calikd.errors import ConfigError
from calikd.experiments import expand, load_spec, run_sweep
from calikd.experiments.runner import EXECUTORS
from calikd.results import DEFAULT_DB_PATH


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run a sweep file (teachers, calibrations, KD methods, augmentations, seeds)",
        description="Run every run of a sweep file that is not finished yet, recording each in the results "
        "store. Restarting continues where it stopped; several processes on one --db share the work.",
    )
    parser.add_argument("file", metavar="FILE.yaml", help="the sweep file (see the README's Sweeps section)")
    parser.add_argument("--db", default=DEFAULT_DB_PATH, help=f"results store (default: {DEFAULT_DB_PATH})")
    add_executor_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the runs without executing them")
    parser.set_defaults(handler=run)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--executor`` and the ``--ray-*`` options."""
    parser.add_argument(
        "--workers", type=int, default=None, help="runs executed at once, --executor local (default: 1)"
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where runs execute: local processes, or one Ray task per run (pip install 'calikd[ray]')",
    )
    ray = parser.add_argument_group("Ray executor (--executor ray)")
    ray.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to use: 'auto' (a running cluster), host:port or ray://host:port "
        "(default: the local instance, started if none runs)",
    )
    ray.add_argument(
        "--ray-cpus-per-run", type=float, default=None, help="CPUs each run asks for (default: 1)"
    )
    ray.add_argument(
        "--ray-gpus-per-run",
        type=float,
        default=None,
        help="GPUs each run asks for, fractions allowed (default: 0: the runs use CPUs only)",
    )


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """``run_sweep`` keyword arguments for the executor flags in ``args``."""
    ray_flags = {
        "address": args.ray_address,
        "cpus_per_run": args.ray_cpus_per_run,
        "gpus_per_run": args.ray_gpus_per_run,
    }
    given = {k: v for k, v in ray_flags.items() if v is not None}
    if args.executor == "local":
        if given:
            flags = ", ".join(f"--ray-{k.replace('_', '-')}" for k in given)
            raise ConfigError(f"{flags} applies to --executor ray only")
        workers = 1 if args.workers is None else args.workers
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        return {"executor": "local", "workers": workers}
    if args.workers not in (None, 1):
        raise ConfigError(
            "--workers applies to --executor local only",
            hint="with Ray, as many runs execute at once as the cluster has CPUs/GPUs for "
            "(--ray-cpus-per-run, --ray-gpus-per-run)",
        )
    return {"executor": "ray", "ray_options": given}


def run(args: argparse.Namespace) -> int:
    options = executor_options(args)
    spec = load_spec(args.file)
    if args.dry_run:
        for plan in expand(spec):
            print(f"{plan.kind:<10} {plan.run_id[:8]}  {plan.name}")
        return 0
    outcome = run_sweep(spec, db_path=args.db, **options)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(outcome.counts.items()))
    print(f"sweep '{spec.name}' done: {counts}")
    if outcome.failed:
        print("failed: " + "; ".join(outcome.failed))
        print(f"see `calikd runs list --db {args.db} --sweep {spec.name} --status failed`")
        return 1
    return 0
