"""Report writers: one function per format, ``write(report, out) -> list of files written``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench3d2d.report.writers.html import write_html
from bench3d2d.report.writers.latex import write_latex
from bench3d2d.report.writers.markdown import write_markdown
from bench3d2d.report.writers.tabular import write_csv, write_json

WRITERS: dict[str, Callable[..., list[Path]]] = {
    "csv": write_csv,
    "json": write_json,
    "latex": write_latex,
    "md": write_markdown,
    "html": write_html,
}

__all__ = ["WRITERS", "write_csv", "write_html", "write_json", "write_latex", "write_markdown"]
