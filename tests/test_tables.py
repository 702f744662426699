"""The one table helper (``kit/report/tables.py``) the benchmarks, run folders and ``kit report`` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.experiments import RunDir
from kit.report.tables import html_table, markdown_table, markdown_tables


def test_markdown_table_is_header_rule_and_one_line_per_row() -> None:
    text = markdown_table(["method", "10/class"], [["dm", "62.1 ± 1.0"], ["full", 93]])
    assert text == "| method | 10/class |\n|---|---|\n| dm | 62.1 ± 1.0 |\n| full | 93 |"


def test_alignment_pipes_and_newlines_in_cells() -> None:
    text = markdown_table(["a", "b", "c"], [["x|y", "two\nlines", ""]], align=["left", "right", "center"])
    header, rule, row = text.split("\n")
    assert rule == "|:---|---:|:---:|"
    assert row == "| x\\|y | two lines |  |"  # the pipe stays inside its cell, the row stays one line
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a"], [], align=["middle"])


def test_a_row_of_the_wrong_width_is_refused_not_shifted() -> None:
    with pytest.raises(ValueError, match=r"2 cells \(row 1 has 3\)"):
        markdown_table(["a", "b"], [[1, 2], [1, 2, 3]])


def test_run_folder_tables_render_under_their_titles(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run", "demo", {"seed": 0})
    run.add_table("First", ["k", "v"], [["a", 1]])
    run.add_table("Second", ["k"], [["b"]])
    assert markdown_tables(run.tables) == (
        "**First**\n\n| k | v |\n|---|---|\n| a | 1 |\n\n**Second**\n\n| k |\n|---|\n| b |"
    )
    with pytest.raises(ValueError, match="table 'Bad': rows must have 2 cells"):
        run.add_table("Bad", ["k", "v"], [["a"]])


def test_html_table_escapes_what_came_from_a_file() -> None:
    text = html_table({"title": "<b>t</b>", "columns": ["c&d"], "rows": [["<script>"]]})
    assert "<h3>&lt;b&gt;t&lt;/b&gt;</h3>" in text and "<th>c&amp;d</th>" in text
    assert "<td>&lt;script&gt;</td>" in text and "<script>" not in text
