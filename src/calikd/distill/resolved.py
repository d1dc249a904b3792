"""A distillation method resolved once per run: the options as recorded (the generic flags merged in, the
authors' per-pair values applied) and the typed config built from them, which the distiller receives."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calikd.distill.base import Distiller, DistillerConfig
from calikd.distill.registry import distiller_class, method_config, pair_options


@dataclass(frozen=True)
class ResolvedMethod:
    """Method ``name``, its ``options`` (what checkpoints and reports record) and their typed ``config``."""

    name: str
    options: Mapping[str, Any]
    config: DistillerConfig

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> ResolvedMethod:
        """Check ``options`` (unknown or invalid ones fail here, before any work) and type them."""
        return cls(name, dict(options), method_config(name, options))

    @property
    def distiller_class(self) -> type[Distiller]:
        """The method's :class:`Distiller` class."""
        return distiller_class(self.name)

    def with_option(self, key: str, value: Any) -> ResolvedMethod:
        """This method with option ``key`` set to ``value`` (a value the run derived, e.g. a fitted T)."""
        config = dataclasses.replace(self.config, **{key: value})
        return ResolvedMethod(self.name, {**self.options, key: value}, config)

    def with_pair_defaults(
        self, teacher_model: str | None, student: str, say: Callable[[str], None]
    ) -> ResolvedMethod:
        """``--method-preset paper``: the authors' values for this pair under the options given explicitly."""
        values = pair_options(self.name, teacher_model, student)
        if values is None:
            say(
                f"note: no per-pair values of {self.name} for {teacher_model} -> {student}: "
                "the method's defaults apply (`calikd methods` lists the pairs)"
            )
            return self
        taken = {k: v for k, v in values.items() if k not in self.options}
        merged = ResolvedMethod.build(self.name, {**self.options, **taken})  # must still be valid
        say(f"{self.name}: the authors' values for {teacher_model} -> {student}: {taken}")
        return merged
