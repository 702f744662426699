"""Tables as data and their two renderings: GitHub Markdown (bench/results/*.md) and HTML (``kit report``).

Why one module: a table is ``{"title", "columns", "rows"}`` everywhere (``RunDir.add_table`` stores
it, ``kit report`` draws it, the benchmarks print it), and the benchmarks used to build the
Markdown by hand ten times over, each with its own header and separator code. Here the shape is
checked once (every row as wide as the header) and each format is written in one place; a
benchmark only decides what goes in the cells.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

#: Markdown separator cell per alignment (None: the renderer's default, left)
_RULES = {None: "---", "left": ":---", "right": "---:", "center": ":---:"}


def check_width(columns: Sequence[Any], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    """Every row has one cell per column (a short row would shift the rest of the table silently)."""
    bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
    if bad is not None:
        name = f"table '{title}'" if title else "table"
        raise ValueError(f"{name}: rows must have {len(columns)} cells (row {bad} has {len(rows[bad])})")


def _cell(value: Any) -> str:
    # a "|" inside a cell would end it early and a newline would end the row
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    columns: Sequence[Any], rows: Iterable[Sequence[Any]], align: Sequence[str | None] | None = None
) -> str:
    """A GitHub Markdown table (header, rule, one line per row; no trailing newline).

    Cells are ``str(value)``: the caller formats numbers, since only it knows the precision its
    measurement deserves. ``align`` gives ``"left"``, ``"right"``, ``"center"`` or None per column.
    """
    rows = [list(r) for r in rows]
    check_width(columns, rows)
    align = list(align) if align is not None else [None] * len(columns)
    if len(align) != len(columns) or any(a not in _RULES for a in align):
        raise ValueError(f"align: expected {len(columns)} of {', '.join(str(k) for k in _RULES)}, got {align}")
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "".join(f"{_RULES[a]}|" for a in align)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_tables(tables: Iterable[dict[str, Any]]) -> str:
    """Run-folder tables (``RunDir.add_table``) one after another, each under its title in bold."""
    return "\n\n".join(f"**{t['title']}**\n\n{markdown_table(t['columns'], t['rows'])}" for t in tables)


def html_escape(value: object) -> str:
    """Text from a file as HTML text (None as empty): a class name or caption can never inject markup."""
    return html.escape("" if value is None else str(value), quote=True)


def html_table(table: dict[str, Any]) -> str:
    """One table as escaped HTML (a heading when it has a title); no CSS, the page supplies it."""
    head = "".join(f"<th>{html_escape(c)}</th>" for c in table["columns"])
    body = "\n".join("<tr>" + "".join(f"<td>{html_escape(v)}</td>" for v in row) + "</tr>" for row in table["rows"])
    title = f"<h3>{html_escape(table['title'])}</h3>\n" if table.get("title") else ""
    return f"{title}<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
