"""What a report is made of: its options and the assembled :class:`Report` that every writer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench3d2d.evaluation import statistics as stats
from bench3d2d.report.collect import ResultsCollection
from bench3d2d.report.tables import Leaderboard
from bench3d2d.report.view import Section

FORMATS = ("md", "html", "csv", "json", "latex")
FIGURES_DIR = "figures"


@dataclass
class ReportOptions:
    """How to build a report."""

    title: str | None = None
    metrics: tuple[str, ...] = stats.HEADLINE_METRICS  # metrics of the main tables and figures
    alpha: float = 0.05
    confidence: float = 0.95
    bootstrap_resamples: int = 9999
    seed: int = 0
    overlay_cases: int = 3
    figures: bool = True
    formats: tuple[str, ...] = FORMATS
    command: str = ""  # the command that reproduces the report (shown in it)

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")


@dataclass
class Report:
    """Everything a writer needs."""

    title: str
    source: str
    collection: ResultsCollection
    leaderboard: Leaderboard
    sections: list[Section]
    options: ReportOptions
    curves: dict[str, str] = field(default_factory=dict)  # train dataset -> figure path (relative)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
