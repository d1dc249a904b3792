"""`calikd methods` names every method's source, and the DOT optimizer option usable with any of them."""

from __future__ import annotations

import pytest

from calikd.cli import main
from calikd.distill import distiller_info, list_distillers

NEW = {
    "mlkd": "Jin et al., CVPR 2023",
    "nkd": "Yang et al., ICCV 2023",
    "sdd": "Wei et al., CVPR 2024",
    "tfkd": "Yuan et al., CVPR 2020",
    "rld": "Sun et al., ICCV 2025",
}


def test_every_method_has_a_source() -> None:
    missing = [name for name in list_distillers() if not distiller_info(name)["source"]]
    assert not missing, f"methods without a source (set the class attribute `source`): {missing}"


def test_methods_lists_sources_and_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(("-", " "))}
    for name, source in NEW.items():
        assert source in rows[name], name
    assert "no teacher" in rows["tfkd"] and "features" in rows["sdd"] and "logits" in rows["rld"]
    assert "--dot" in out and "ICCV 2023" in out
    assert main(["methods", "nkd"]) == 0
    detail = capsys.readouterr().out
    assert "source: Yang et al., ICCV 2023" in detail and "gamma" in detail
