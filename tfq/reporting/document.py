"""A tiny document model rendered twice: GitHub Markdown and one self-contained HTML file.

A report is a list of blocks (:class:`Heading`, :class:`Paragraph`,
:class:`Table`, :class:`Image`, :class:`Code`, :class:`Bullets`). Markdown
references images by relative path; HTML embeds them as base64 ``data:`` URIs
so the file can be mailed or attached on its own. Text is plain, with
```code``` spans as the only inline markup.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

__all__ = ["Bullets", "Code", "Heading", "Image", "Paragraph", "Table", "to_html", "to_markdown"]


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
    """Cells are already formatted strings; ``align`` per column: ``left`` or ``right``."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Image:
    """A PNG next to the report (``path`` relative to the report directory)."""

    path: str
    alt: str
    caption: str = ""


Block = Union[Heading, Paragraph, Bullets, Code, Table, Image]


# --------------------------------------------------------------------------- Markdown


def _md_table(t: Table) -> str:
    """Uses ``tfq.report.markdown_table`` (the stages' table style) when it is available."""
    align = list(t.align) or ["left"] + ["right"] * (len(t.headers) - 1)
    try:
        from tfq.report import Column, markdown_table

        cols = [Column(key=str(i), header=h, fmt=str, align=a) for i, (h, a) in enumerate(zip(t.headers, align))]
        return markdown_table([{str(i): c for i, c in enumerate(r)} for r in t.rows], cols)
    except (ImportError, TypeError, ValueError):
        esc = [[c.replace("|", "\\|") for c in r] for r in t.rows]
        widths = [max(3, len(h), *(len(r[i]) for r in esc)) for i, h in enumerate(t.headers)]
        line = lambda cells: "| " + " | ".join(  # noqa: E731
            c.ljust(w) if a == "left" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"
        rule = "| " + " | ".join(":" + "-" * (w - 1) if a == "left" else "-" * (w - 1) + ":"
                                 for w, a in zip(widths, align)) + " |"
        return "\n".join([line(t.headers), rule, *(line(r) for r in esc)]) + "\n"


def to_markdown(blocks: Sequence[Block]) -> str:
    """Renders blocks as GitHub-flavoured Markdown."""
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Paragraph):
            parts.append(b.text.strip() + "\n")
        elif isinstance(b, Bullets):
            parts.append("".join(f"- {item}\n" for item in b.items))
        elif isinstance(b, Code):
            parts.append(f"```{b.language}\n{b.text.rstrip()}\n```\n")
        elif isinstance(b, Table):
            parts.append(_md_table(b))
        elif isinstance(b, Image):
            parts.append(f"![{b.alt}]({b.path})\n" + (f"\n*{b.caption}*\n" if b.caption else ""))
        else:  # pragma: no cover
            raise TypeError(f"unknown block {b!r}")
    return "\n".join(parts)


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.r { text-align: right; font-variant-numeric: tabular-nums; } td.l { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
code { background: #f6f8fa; padding: 0 3px; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; }
"""


def _inline(text: str) -> str:
    out, pos = [], 0
    for m in re.finditer(r"`([^`]+)`", text):
        out.append(html.escape(text[pos:m.start()]))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def to_html(blocks: Sequence[Block], base_dir: str | Path, title: str) -> str:
    """Renders blocks as one self-contained HTML page (images embedded as base64).

    Args:
      blocks: The document.
      base_dir: Directory image paths are relative to.
      title: The page title.
    """
    base = Path(base_dir)
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{_inline(b.text.strip())}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Code):
            body.append(f"<pre><code>{html.escape(b.text.rstrip())}</code></pre>")
        elif isinstance(b, Table):
            align = list(b.align) or ["left"] + ["right"] * (len(b.headers) - 1)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f'<td class="{a[0]}">{html.escape(c)}</td>' for c, a in zip(r, align)) + "</tr>"
                for r in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode((base / b.path).read_bytes()).decode("ascii")
            cap = f"<figcaption>{_inline(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">{cap}</figure>')
        else:  # pragma: no cover
            raise TypeError(f"unknown block {b!r}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
