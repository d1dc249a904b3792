"""What running a sweep as a graph saves over running it in phases, replayed from its recorded run times.

Reads a sweep file (``calikd reproduce NAME --export-spec FILE`` writes a study's) and the recorded
``wall_time_s`` of its runs from a results store, and replays the sweep on
``--workers`` workers in virtual time twice: in phases (every teacher, then every calibration, then every
student, ...; each phase's runs to the first free worker in the file's order, the next phase once the last one
ended) and as calikd's sweeps run it now (:class:`calikd.experiments.schedule.Schedule`: a run starts once the
runs it needs have finished). Prints both wall times, their ratio and the workers' idle share. A replay
leaves out what is not in the runs' wall times (process start-up, reports) and assumes a run takes as long
whatever runs beside it.

    .venv/bin/python benchmarks/sweep_schedule.py --sweep song2021-full --db runs/calikd.db  # as recorded
    # a store from before sweeps kept their file: the study's file, written again
    calikd reproduce song2021 --preset full --out runs/full3/song2021-full --export-spec runs/song.yaml
    .venv/bin/python benchmarks/sweep_schedule.py runs/song.yaml --db runs/full3/calikd.db
"""

from __future__ import annotations

import argparse
import heapq

from calikd.engine.probe_cache import cpu_model
from calikd.experiments import expand, load_spec, parse_spec
from calikd.experiments.plan import RunPlan
from calikd.experiments.runner import PHASES
from calikd.experiments.schedule import Schedule, replay
from calikd.experiments.spec import recorded_file
from calikd.results import ResultsStore


def in_phases(plans: list[RunPlan], seconds: dict[str, float], workers: int) -> float:
    """Wall time of the phases in turn, each phase's runs list-scheduled on ``workers`` in order."""
    clock = 0.0
    for phase in PHASES:
        free = [clock] * workers
        for plan in (p for p in plans if p.kind == phase):
            start = heapq.heappop(free)
            heapq.heappush(free, start + seconds[plan.run_id])
        clock = max(free)
    return clock


def as_graph(plans: list[RunPlan], seconds: dict[str, float], workers: int) -> float:
    """Wall time of the runs started as soon as what they need has finished (calikd's schedule)."""
    ended = replay(Schedule(plans), workers, lambda plan: seconds[plan.run_id])
    return max((end for end, _ in ended), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the results store")
    parser.add_argument("spec", nargs="?", help="the sweep file (default: the one --sweep recorded)")
    parser.add_argument("--sweep", help="a sweep of the store, replayed from the file it recorded")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if (args.spec is None) == (args.sweep is None):
        parser.error("give the sweep file or --sweep NAME")
    if args.spec is not None:
        spec = load_spec(args.spec)
    else:
        with ResultsStore(args.db, create=False) as store:
            stored = next((s.spec for s in store.sweeps() if s.name == args.sweep), None)
        spec = parse_spec(recorded_file(stored, args.sweep))
    with ResultsStore(args.db, create=False) as store:
        records = {r.run_id: r for r in store.list_runs(sweep=spec.name)}
    plans = expand(spec)
    missing = [
        p.name for p in plans if records.get(p.run_id) is None or records[p.run_id].wall_time_s is None
    ]
    if missing:
        raise SystemExit(
            f"{len(missing)} runs of '{spec.name}' have no recorded wall time (e.g. {missing[0]})"
        )
    seconds = {p.run_id: float(records[p.run_id].wall_time_s) for p in plans}
    busy = sum(seconds.values())
    print(
        f"CPU: {cpu_model()}; sweep '{spec.name}': {len(plans)} runs, {busy / 60:.1f} min of runs, "
        f"{args.workers} workers (replayed from the recorded run times)"
    )
    phases, graph = in_phases(plans, seconds, args.workers), as_graph(plans, seconds, args.workers)
    for name, wall in (("in phases", phases), ("as a graph", graph)):
        idle = 1 - busy / (wall * args.workers)
        print(f"  {name:<10}  {wall / 60:6.1f} min   workers idle {100 * idle:4.1f}%")
    longest = max(seconds.values()) / 60
    print(f"  graph / phases: {graph / phases:.3f}  (no schedule beats the longest run, {longest:.1f} min)")


if __name__ == "__main__":
    main()
