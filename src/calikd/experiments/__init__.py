"""Experiments: sweep files expanded into runs, executed into the results store (``calikd sweep``)."""

from calikd.experiments.plan import RunPlan, expand
from calikd.experiments.runner import SweepOutcome, run_sweep
from calikd.experiments.spec import SweepSpec, load_spec, parse_spec

__all__ = ["RunPlan", "SweepOutcome", "SweepSpec", "expand", "load_spec", "parse_spec", "run_sweep"]
