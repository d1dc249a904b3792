"""Markdown tables (number formatting, alignment, escaping) and the MarkdownDoc builder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from calikd.analysis import mean_std
from calikd.errors import ConfigError
from calikd.report import format_mean_std
from calikd.report.markdown import (
    BulletList,
    Heading,
    MarkdownDoc,
    Table,
    format_cell,
    make_table,
    table,
)


def test_table_exact_text() -> None:
    rows = [["resnet18", 0.912345, "0.0312 ± 0.0040"], ["vgg", 0.9, None]]
    text = table(["model", "accuracy", "ECE"], rows)
    assert text == (
        "| model    | accuracy |             ECE |\n"
        "| -------- | -------: | --------------: |\n"
        "| resnet18 |   0.9123 | 0.0312 ± 0.0040 |\n"
        "| vgg      |   0.9000 |               — |"
    )


def test_format_cell() -> None:
    assert format_cell(0.123456) == "0.1235"
    assert format_cell(0.123456, digits=2) == "0.12"
    assert format_cell(np.float32(0.5)) == "0.5000"
    assert format_cell(np.int64(7)) == "7" and format_cell(3) == "3"
    assert format_cell(math.nan) == "n/a" and format_cell(None) == "—"
    assert format_cell(True) == "yes" and format_cell(False) == "no"
    assert format_cell("91.2 ± 0.3") == "91.2 ± 0.3"
    assert format_cell(Path("a/b")) == "a/b"


def test_mean_std_and_format() -> None:
    values = [0.91, 0.93, 0.92, 0.95]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    single = mean_std([0.5])
    assert single[0] == 0.5 and math.isnan(single[1])
    with pytest.raises(ConfigError, match="no values"):
        mean_std([])
    assert format_mean_std(0.91234, 0.00456) == "0.9123 ± 0.0046"
    assert format_mean_std(0.91234, 0.00456, digits=2, scale=100) == "91.23 ± 0.46"
    assert format_mean_std(0.5, math.nan) == "0.5000" and format_mean_std(0.5) == "0.5000"
    assert format_mean_std(math.nan, 0.1) == "n/a"


def test_alignment() -> None:
    t = make_table(["a", "b", "c", "d"], [["x", 1, "1.0 ± 0.1", None], ["y", math.nan, "95.1%", None]])
    assert t.align == ("left", "right", "right", "left")  # numbers (and n/a, —) right, text/empty left
    assert make_table(["a", "b"], [[1, 2]], align=["c", "Left"]).align == ("center", "left")
    assert table(["a"], [["x"]], align=["center"]).splitlines()[1] == "| :-: |"
    with pytest.raises(ConfigError, match="unknown alignment 'middle'"):
        table(["a"], [[1]], align=["middle"])
    with pytest.raises(ConfigError, match="one entry per column"):
        table(["a", "b"], [[1, 2]], align=["left"])
    with pytest.raises(ConfigError, match="one entry per column"):
        table(["a"], [[1]], align="l")


def test_table_errors_and_empty() -> None:
    with pytest.raises(ConfigError, match="at least one column"):
        table([], [])
    with pytest.raises(ConfigError, match=r"row 1 has 1 cells, expected 2"):
        table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ConfigError, match="row 0 has a string"):
        table(["a", "b"], ["ab"])
    assert table(["only", "headers"], []) == "| only | headers |\n| ---- | ------- |"


def test_table_escaping() -> None:
    text = table(["name|x", "note"], [["a|b", "<script>alert(1)</script>"], ["`x|y`", "two\nlines"]])
    lines = text.splitlines()
    assert len(lines) == 4  # the newline in a cell does not break the table
    assert lines[0].startswith(r"| name\|x")
    assert r"a\|b" in lines[2] and "&lt;script>alert(1)&lt;/script>" in lines[2] and "<script" not in text
    assert r"`x\|y`" in lines[3] and "two lines" in lines[3]


def test_doc_text(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    doc = (
        MarkdownDoc()
        .heading("Sweep <b>", 1)
        .paragraph("teacher `resnet<18>` is **calibrated**")
        .table(["T", "acc"], [[1, 0.9], [4, 0.91]], digits=2)
        .image("plots/my plot.png", "accuracy [vs] T")
        .code_block("calikd report runs/x\n```\n", "bash")
        .bullet_list(["one", "two <i>"])
    )
    assert doc.title() == "Sweep <b>"
    assert doc.text(base_dir=tmp_path / "out") == (
        "# Sweep &lt;b>\n\n"
        "teacher `resnet<18>` is **calibrated**\n\n"
        "|   T |  acc |\n| --: | ---: |\n|   1 | 0.90 |\n|   4 | 0.91 |\n\n"
        "![accuracy \\[vs\\] T](../plots/my%20plot.png)\n\n"
        "````bash\ncalikd report runs/x\n```\n````\n\n"
        "- one\n- two &lt;i>\n"
    )
    assert str(tmp_path / "plots" / "my%20plot.png") in doc.text()  # no base_dir: absolute paths
    assert isinstance(doc.blocks[0], Heading) and isinstance(doc.blocks[2], Table)
    assert isinstance(doc.blocks[-1], BulletList)


def test_doc_errors() -> None:
    doc = MarkdownDoc()
    with pytest.raises(ConfigError, match=r"heading level must be 1\.\.6"):
        doc.heading("x", 7)
    with pytest.raises(ConfigError, match="heading level"):
        Heading("x", 0)
    with pytest.raises(ConfigError, match="non-empty alt text"):
        doc.image("a.png", " ")
    with pytest.raises(ConfigError, match="at least one item"):
        doc.bullet_list([])
    with pytest.raises(ConfigError, match="single word"):
        doc.code_block("x", "python\n<script>")
    assert doc.blocks == [] and MarkdownDoc().title() is None
