"""One self-contained HTML page from report ``Section``s.

Why self-contained (inline CSS, base64 data URIs, no scripts, no external URLs): the page is
mailed around, attached to issues and opened on machines without the run folders or internet;
a single file that renders offline is the only form that survives that. Every piece of text that
comes from a file is escaped (``html.escape``), so a class name or a caption can never inject
markup. The file is written atomically.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from deploy.runtime.artifact import atomic_write_text
from deploy.runtime.errors import KitError

from .sources import Section, read_input
from .tables import html_escape as _e
from .tables import html_table

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}
h3{font-size:1rem;margin-bottom:.3rem}.meta{color:#666;font-size:.85rem}
table{border-collapse:collapse;margin:.5rem 0 1.2rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:left}th{background:#f3f3f3}
tbody tr:nth-child(even){background:#fafafa}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;font-size:.9rem}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}figure{margin:1rem 0}
img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85rem}.note{color:#8a5a00}nav ol{font-size:.9rem}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def section_html(section: Section, anchor: str) -> str:
    parts = [
        f'<section id="{_e(anchor)}">',
        f"<h2>{_e(section.title)}</h2>",
        f'<p class="meta">{_e(section.kind)} &middot; {_e(section.source)}</p>',
    ]
    if section.summary:
        parts.append(f"<p>{_e(section.summary)}</p>")
    if section.facts:
        parts.append(
            '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in section.facts) + "</dl>"
        )
    parts += [f'<p class="note">{_e(note)}</p>' for note in section.notes]
    parts += [html_table(table) for table in section.tables]
    for png, caption in section.images:
        parts.append(
            f'<figure><img src="{data_uri(png, "image/png")}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    for wav, caption in section.audio:
        parts.append(
            f'<figure><audio controls preload="none" src="{data_uri(wav, "audio/wav")}"></audio>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def render_page(title: str, sections: Sequence[Section]) -> str:
    """The whole page as a string (a table of contents, then one ``<section>`` per input)."""
    anchors = [f"s{i + 1}" for i in range(len(sections))]
    toc = "".join(f'<li><a href="#{a}">{_e(s.title)}</a></li>' for a, s in zip(anchors, sections))
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = "\n".join(section_html(s, a) for s, a in zip(sections, anchors))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>{_e(title)}</h1>\n"
        f'<p class="meta">{len(sections)} input(s), generated {_e(created)} by kit report</p>\n'
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body>\n</html>\n"
    )


def write_report(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    title: str = "kit report",
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Read every input, render the page and write it atomically to ``out``; returns the path."""
    paths = list(inputs)
    if not paths:
        raise KitError("kit report: give at least one run folder, coreset or benchmark result")
    sections = [read_input(p, data_dir=data_dir, progress=progress) for p in paths]
    out = Path(out)
    atomic_write_text(out, render_page(title, sections))
    return out
