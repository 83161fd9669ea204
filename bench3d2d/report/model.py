"""What a report is made of: its options and the assembled :class:`Report` that every writer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import PAPER_CLAIMS, Claim
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
    unit: str = "patient"  # unit of analysis of tests and intervals: "patient" or "case" (scan)
    rank_resamples: int = 1000  # bootstrap resamples of the ranking-stability analysis
    claims: tuple[Claim, ...] = PAPER_CLAIMS  # the claims checked at the top of the board
    overlay_cases: int = 3
    figures: bool = True
    formats: tuple[str, ...] = FORMATS
    command: str = ""  # the command that reproduces the report (shown in it)
    note: str = ""  # a paragraph under the title (what the board is, e.g. "a pipeline check")

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.unit not in stats.UNITS:
            raise ValueError(f"unit must be one of {', '.join(stats.UNITS)}, not {self.unit!r}")


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
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)  # claims check (evaluation.claims)
    cost: pd.DataFrame = field(default_factory=pd.DataFrame)  # per entry and fraction (report.cost)
    cost_figures: dict[str, str] = field(default_factory=dict)  # train dataset -> accuracy-vs-cost figure
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    built_by: str = ""  # the code that built the report (provenance.code_version)
