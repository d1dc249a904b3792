"""The method of a distillation run is resolved once: flags merged, options checked and typed."""

from __future__ import annotations

import pytest

from calikd.distill import DistillConfig
from calikd.distill.resolved import ResolvedMethod
from calikd.errors import ConfigError


def test_resolve_merges_the_flags_and_types_the_options() -> None:
    method = DistillConfig(teacher="t.safetensors", method="kd", ce_weight=0.5).resolve()
    assert isinstance(method, ResolvedMethod)
    assert method.options == {"ce_weight": 0.5}
    assert method.config.ce_weight == 0.5
    assert method.distiller_class.method == "kd"
    changed = method.with_option("kd_weight", 2.0)
    assert changed.config.kd_weight == 2.0 and changed.options == {"ce_weight": 0.5, "kd_weight": 2.0}
    assert method.options == {"ce_weight": 0.5}  # frozen: the original is unchanged


def test_resolve_fails_early_on_bad_options() -> None:
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        DistillConfig(teacher="t.safetensors", method="kd", method_options={"nope": 1}).resolve()
    with pytest.raises(ConfigError, match="contradicts method option"):
        DistillConfig(
            teacher="t.safetensors", method="kd", ce_weight=0.5, method_options={"ce_weight": 0.7}
        ).resolve()
