"""``kit report``: one self-contained HTML page from run folders, coresets and benchmark results.

``sources`` reads each input into a ``Section``, ``plots`` draws the generic figures (confusion
matrix, coreset channels, accuracy vs samples per class), ``html`` renders and writes the page.
"""

from .html import render_page, write_report
from .sources import Section, read_input

__all__ = ["Section", "read_input", "render_page", "write_report"]
