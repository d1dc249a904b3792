"""Markdown for reports: GitHub tables with formatted numbers, and a small document builder.

A :class:`MarkdownDoc` is a list of typed blocks (:class:`Heading`, :class:`Paragraph`, :class:`Table`,
:class:`Image`, :class:`CodeBlock`, :class:`BulletList`) that keep the *raw* text; each output format
escapes it itself: :meth:`MarkdownDoc.text` for Markdown, :func:`calikd.report.html.render_html` for HTML.

Inline markup in headings, paragraphs, bullets and table cells: ``code spans`` and ``**bold**`` only
(rendered the same in both formats). Everything else is text: in Markdown, ``<`` is written as ``&lt;``
(so a name like ``<script>`` is never raw HTML) and ``|`` in table cells as ``\\|``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union
from urllib.parse import quote

from calikd.errors import ConfigError

Align = Literal["left", "right", "center"]
_ALIASES = {"l": "left", "left": "left", "r": "right", "right": "right", "c": "center", "center": "center"}
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


# ------------------------------------------------------------------------------------------ numbers
def format_cell(value: object, *, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` decimals (NaN -> ``n/a``), integers as is, ``None`` -> ``—``,
    strings (e.g. ``"0.9123 ± 0.0040"``) passed through, anything else ``str()``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
    return str(value)


def _looks_numeric(text: str) -> bool:
    parts = text.replace("%", "").split("±")
    if not text or len(parts) > 2:
        return False
    try:
        for part in parts:
            float(part.strip())
    except ValueError:
        return text in ("n/a", "—")
    return True


# ---------------------------------------------------------------------------------------- escaping
def _split_code(text: str) -> list[tuple[bool, str]]:
    """``text`` as (is_code, piece) pairs; code pieces are the span contents."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        if m.start() > pos:
            out.append((False, text[pos : m.start()]))
        out.append((True, m.group(2)))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return out


def md_inline(text: str, *, cell: bool = False) -> str:
    """``text`` as Markdown inline content: ``<`` -> ``&lt;`` outside code spans, newlines -> spaces, and
    in a table cell (``cell``) ``|`` -> ``\\|``."""
    text = " ".join(str(text).splitlines())
    out = []
    for is_code, piece in _split_code(text):
        if is_code:
            fence = "`" * (max((len(r) for r in re.findall(r"`+", piece)), default=0) + 1)
            pad = " " if piece.startswith("`") or piece.endswith("`") else ""
            out.append(f"{fence}{pad}{piece}{pad}{fence}")
        else:
            out.append(piece.replace("<", "&lt;"))
    result = "".join(out)
    return result.replace("|", r"\|") if cell else result


# ------------------------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.level, int) or isinstance(self.level, bool) or not 1 <= self.level <= 6:
            raise ConfigError(f"heading level must be 1..6, got {self.level!r}")


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """Formatted cells (strings) and one alignment per column."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[Align, ...]


@dataclass(frozen=True)
class Image:
    """A picture (PNG) by file path; ``alt`` is its text alternative and caption."""

    path: Path
    alt: str


@dataclass(frozen=True)
class CodeBlock:
    code: str
    language: str = ""


@dataclass(frozen=True)
class BulletList:
    items: tuple[str, ...]


Block = Union[Heading, Paragraph, Table, Image, CodeBlock, BulletList]  # noqa: UP007 - runtime alias


def make_table(
    headers: Sequence[object],
    rows: Sequence[Sequence[object]],
    *,
    align: Sequence[str] | None = None,
    digits: int = 4,
) -> Table:
    """Format ``rows`` (:func:`format_cell`) into a :class:`Table`. ``align`` is one of ``left``/``right``/
    ``center`` (or ``l``/``r``/``c``) per column; by default numeric columns are right-aligned and the
    rest left-aligned. Raises :class:`ConfigError` for no headers or a row of the wrong length."""
    head = tuple(format_cell(h) for h in headers)
    if not head:
        raise ConfigError("a table needs at least one column header")
    body = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or len(row) != len(head):
            n = "a string" if isinstance(row, (str, bytes)) else f"{len(row)} cells"
            raise ConfigError(f"table row {i} has {n}, expected {len(head)} (one per header {list(head)})")
        body.append(tuple(format_cell(v, digits=digits) for v in row))
    if align is None:
        cols = []
        for j in range(len(head)):
            values = [r[j] for r in body if r[j] not in ("", "—", "n/a")]
            cols.append("right" if values and all(_looks_numeric(v) for v in values) else "left")
        resolved = tuple(cols)
    else:
        if isinstance(align, str) or len(align) != len(head):
            raise ConfigError(f"align needs one entry per column ({len(head)}), got {align!r}")
        try:
            resolved = tuple(_ALIASES[str(a).lower()] for a in align)
        except KeyError as exc:
            raise ConfigError(f"unknown alignment {exc.args[0]!r}: use left, right or center") from exc
    return Table(head, tuple(body), resolved)  # type: ignore[arg-type]


def _table_md(t: Table) -> str:
    head = [md_inline(h, cell=True) for h in t.headers]
    body = [[md_inline(c, cell=True) for c in row] for row in t.rows]
    widths = [max(3, len(h), *(len(r[j]) for r in body)) for j, h in enumerate(head)]

    def pad(text: str, j: int) -> str:
        w, a = widths[j], t.align[j]
        return text.rjust(w) if a == "right" else text.center(w) if a == "center" else text.ljust(w)

    def sep(j: int) -> str:
        w, a = widths[j], t.align[j]
        return {"right": "-" * (w - 1) + ":", "center": ":" + "-" * (w - 2) + ":"}.get(a, "-" * w)

    lines = ["| " + " | ".join(pad(h, j) for j, h in enumerate(head)) + " |"]
    lines.append("| " + " | ".join(sep(j) for j in range(len(head))) + " |")
    lines += ["| " + " | ".join(pad(c, j) for j, c in enumerate(row)) + " |" for row in body]
    return "\n".join(lines)


def table(
    headers: Sequence[object],
    rows: Sequence[Sequence[object]],
    *,
    align: Sequence[str] | None = None,
    digits: int = 4,
) -> str:
    """A GitHub Markdown table (see :func:`make_table` for formatting and alignment), padded so the raw
    text lines up; no trailing newline."""
    return _table_md(make_table(headers, rows, align=align, digits=digits))


def _image_target(path: Path, base_dir: str | Path | None) -> str:
    target = str(path)
    if base_dir is not None:
        try:
            target = os.path.relpath(Path(path).absolute(), Path(base_dir).absolute())
        except ValueError:  # pragma: no cover - another drive on Windows
            target = str(Path(path).absolute())
    return quote(Path(target).as_posix(), safe="/:._-~")


def block_markdown(block: Block, base_dir: str | Path | None = None) -> str:
    """One block as Markdown; image paths relative to ``base_dir`` when given."""
    if isinstance(block, Heading):
        return "#" * block.level + " " + md_inline(block.text)
    if isinstance(block, Paragraph):
        return md_inline(block.text)
    if isinstance(block, Table):
        return _table_md(block)
    if isinstance(block, Image):
        alt = " ".join(block.alt.splitlines()).replace("<", "&lt;")
        alt = alt.replace("\\", "\\\\").replace("[", r"\[").replace("]", r"\]")
        return f"![{alt}]({_image_target(block.path, base_dir)})"
    if isinstance(block, CodeBlock):
        fence = "`" * max(3, max((len(r) for r in re.findall(r"`{3,}", block.code)), default=0) + 1)
        return f"{fence}{block.language}\n{block.code.rstrip(chr(10))}\n{fence}"
    if isinstance(block, BulletList):
        return "\n".join(f"- {md_inline(item)}" for item in block.items)
    raise ConfigError(f"not a report block: {type(block).__name__}")


# ---------------------------------------------------------------------------------------- document
class MarkdownDoc:
    """A report built block by block; every method returns the document, so calls chain::

    doc = MarkdownDoc().heading("Sweep", 1).paragraph("…").table(["model", "acc"], rows)
    doc.image("plots/scatter.png", "teacher ECE vs student accuracy")
    print(doc.text())
    """

    def __init__(self, blocks: Iterable[Block] = ()) -> None:
        self.blocks: list[Block] = list(blocks)

    def heading(self, text: str, level: int = 2) -> MarkdownDoc:
        self.blocks.append(Heading(str(text), level))
        return self

    def paragraph(self, text: str) -> MarkdownDoc:
        self.blocks.append(Paragraph(str(text)))
        return self

    def table(
        self,
        headers: Sequence[object],
        rows: Sequence[Sequence[object]],
        *,
        align: Sequence[str] | None = None,
        digits: int = 4,
    ) -> MarkdownDoc:
        self.blocks.append(make_table(headers, rows, align=align, digits=digits))
        return self

    def image(self, path: str | os.PathLike[str], alt: str) -> MarkdownDoc:
        """Add a picture. A relative ``path`` is taken relative to the current folder now (the path you
        would open the file with); :meth:`text` writes it relative to ``base_dir``."""
        if not str(alt).strip():
            raise ConfigError(f"image '{path}' needs a non-empty alt text (a description of the plot)")
        self.blocks.append(Image(Path(path).absolute(), str(alt)))
        return self

    def code_block(self, code: str, language: str = "") -> MarkdownDoc:
        if not re.fullmatch(r"[\w+.#-]*", language):
            raise ConfigError(f"code block language must be a single word, got {language!r}")
        self.blocks.append(CodeBlock(str(code), language))
        return self

    def bullet_list(self, items: Iterable[str]) -> MarkdownDoc:
        items = tuple(str(i) for i in items)
        if not items:
            raise ConfigError("a bullet list needs at least one item")
        self.blocks.append(BulletList(items))
        return self

    def text(self, base_dir: str | Path | None = None) -> str:
        """The document as Markdown, blocks separated by blank lines, ending with a newline. Image paths
        are relative to ``base_dir`` (the folder the Markdown file goes to) when given, else absolute."""
        return "\n\n".join(block_markdown(b, base_dir) for b in self.blocks) + "\n"

    def title(self) -> str | None:
        """The text of the first level-1 heading, if any."""
        return next((b.text for b in self.blocks if isinstance(b, Heading) and b.level == 1), None)
