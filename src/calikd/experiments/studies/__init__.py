"""Studies: one module per paper whose claim calikd re-tests (``calikd reproduce NAME --preset P``), each a
:class:`Study` registered with ``@register_study``; :mod:`~calikd.experiments.studies.base` runs them."""

from calikd.experiments.presets import PRESETS
from calikd.experiments.studies.base import build_spec, reproduce, smoke_spec
from calikd.experiments.studies.registry import Study, get_study, list_studies, register_study

__all__ = [
    "PRESETS",
    "Study",
    "build_spec",
    "get_study",
    "list_studies",
    "register_study",
    "reproduce",
    "smoke_spec",
]
