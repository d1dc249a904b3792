"""A self-contained HTML page from a :class:`~calikd.report.markdown.MarkdownDoc`, and the pair of files.

The page works offline and alone: CSS is inline, images are embedded as ``data:`` URIs read from their
files, there is no script, no external font, style sheet or image (a Content-Security-Policy ``<meta>``
forbids any). Every piece of text is HTML-escaped; the only markup made from it is ``code spans`` and
``**bold**`` (see :mod:`calikd.report.markdown`).
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

from calikd.errors import ConfigError
from calikd.report.markdown import (
    Block,
    BulletList,
    CodeBlock,
    Heading,
    Image,
    MarkdownDoc,
    Paragraph,
    Table,
    _split_code,
)
from calikd.utils.io import atomic_write_bytes, ensure_writable_dir

_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.5; color: #1f2328; background: #fff; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }
h1, h2, h3, h4, h5, h6 { line-height: 1.25; margin: 1.6em 0 0.6em; }
h1 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.3em; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.9em; background: #f6f8fa; border-radius: 4px; }
code { padding: 0.1em 0.3em; }
pre { padding: 0.8em 1em; overflow-x: auto; }
pre code { padding: 0; background: none; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; display: block;
  overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 0.35em 0.7em; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 0.9em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _inline(text: str) -> str:
    """Escaped ``text`` with ``code spans`` and ``**bold**`` as markup (see markdown.md_inline)."""
    out = []
    for is_code, piece in _split_code(" ".join(str(text).splitlines())):
        escaped = html.escape(piece, quote=True)
        out.append(f"<code>{escaped}</code>" if is_code else _BOLD.sub(r"<strong>\1</strong>", escaped))
    return "".join(out)


def _data_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"report image '{path}' cannot be read: {exc.strerror or exc}",
            hint="write the plot before rendering the report",
        ) from exc
    mime = next((m for sig, m in _MIME if data.startswith(sig)), None)
    if mime is None:
        raise ConfigError(f"report image '{path}' is not a PNG or JPEG file")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _table(t: Table) -> str:
    def cell(tag: str, text: str, align: str) -> str:
        style = "" if align == "left" else f' style="text-align:{align}"'
        return f"<{tag}{style}>{_inline(text)}</{tag}>"

    head = "".join(cell("th", h, a) for h, a in zip(t.headers, t.align, strict=True))
    rows = "\n".join(
        "<tr>" + "".join(cell("td", c, a) for c, a in zip(row, t.align, strict=True)) + "</tr>"
        for row in t.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def block_html(block: Block) -> str:
    """One block as HTML; an image is read from its path (a relative one from the current folder)."""
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        alt = html.escape(block.alt, quote=True)
        src = _data_uri(Path(block.path))
        return f'<figure><img src="{src}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
    if isinstance(block, CodeBlock):
        lang = f' class="language-{html.escape(block.language, quote=True)}"' if block.language else ""
        return f"<pre><code{lang}>{html.escape(block.code.rstrip(chr(10)), quote=True)}</code></pre>"
    if isinstance(block, BulletList):
        return "<ul>\n" + "\n".join(f"<li>{_inline(item)}</li>" for item in block.items) + "\n</ul>"
    raise ConfigError(f"not a report block: {type(block).__name__}")


def render_html(doc: MarkdownDoc | Sequence[Block], title: str) -> str:
    """A complete, self-contained HTML page of ``doc`` titled ``title`` (escaped). ``title`` is also shown
    as a level-1 heading when the document has none of its own. Images are embedded as base64 ``data:``
    URIs; an unreadable or non-PNG/JPEG image raises :class:`ConfigError`."""
    blocks = list(doc.blocks if isinstance(doc, MarkdownDoc) else doc)
    body = [block_html(b) for b in blocks]
    if not any(isinstance(b, Heading) and b.level == 1 for b in blocks):
        body.insert(0, f"<h1>{html.escape(str(title), quote=True)}</h1>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="calikd">\n'
        f"<title>{html.escape(str(title), quote=True)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def write_report(
    doc: MarkdownDoc | Sequence[Block],
    out_dir: str | os.PathLike[str],
    name: str = "report",
    *,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>.md`` (images referenced by paths relative to ``out_dir``) and ``<name>.html`` (images
    embedded) into ``out_dir``, each atomically; return ``(md_path, html_path)``. Both are rendered before
    either is written, so a bad image leaves neither. ``title`` defaults to the document's first level-1
    heading, else ``name``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"report name must be a plain file name (letters, digits, '.', '_', '-'), got {name!r}"
        )
    if not isinstance(doc, MarkdownDoc):
        doc = MarkdownDoc(doc)
    page = render_html(doc, title or doc.title() or name)
    text = doc.text(base_dir=out_dir)
    out = ensure_writable_dir(out_dir)
    md_path, html_path = out / f"{name}.md", out / f"{name}.html"
    atomic_write_bytes(md_path, text.encode("utf-8", errors="backslashreplace"))
    atomic_write_bytes(html_path, page.encode("utf-8", errors="backslashreplace"))
    return md_path, html_path
