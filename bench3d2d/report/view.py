"""What every writer shows, computed once: formatted cells of the board tables, in board order.

Writers (Markdown, HTML, LaTeX) only lay these out and escape the text for their format. All text that
comes from users or plugins (model, dataset, test set and case names) is left raw here: escaping is
the writers' job, since each format needs its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.report.tables import Leaderboard

#: Marker of an entry significantly worse than the best (Holm-adjusted Wilcoxon p < alpha).
WORSE_MARKER = "†"


def fmt_value(metric: str, value: float) -> str:
    """A metric value with the number of decimals that suits it (``–`` for NaN)."""
    if value is None or not math.isfinite(value):
        return "–"
    digits = 3 if metric in ("dice", "precision", "recall") else 3 if abs(value) < 10 else 2
    return f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value: three significant digits, ``<0.001`` below 0.001, ``–`` for NaN."""
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p >= 0.01 else f"{p:.4f}"


def fmt_fraction(fraction: float) -> str:
    """``5 %``."""
    return f"{fraction:g} %"


@dataclass
class Cell:
    """One metric's cells of one board row (text) plus the raw numbers (for sorting)."""

    mean_std: str
    median: str
    ci: str
    rank: str
    p_holm: str
    marker: str
    is_best: bool
    mean: float
    median_value: float
    mean_rank: float
    p_value: float
    n: int
    n_nan: int


@dataclass
class Row:
    """One entry of a board."""

    model: str
    pretrain: str
    entry: str
    pretrain_label: str
    n: int
    seeds: str
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Section:
    """One board: (train dataset, test set, fraction)."""

    train_dataset: str
    test_set: str
    fraction: float
    metrics: list[str]
    other_metrics: list[str]
    rows: list[Row]
    friedman: dict[str, str]
    pairwise: dict[str, pd.DataFrame]
    figures: dict[str, str] = field(default_factory=dict)  # "cd:<metric>" / "overlay" -> relative path
    anchor: str = ""
    missing: list[str] = field(default_factory=list)  # runs of this section that are not complete

    @property
    def cd_metrics(self) -> list[str]:
        """Board metrics that have a critical-difference diagram."""
        return [m for m in self.metrics if f"cd:{m}" in self.figures]

    @property
    def heading(self) -> str:
        """``test set · fraction`` (the train dataset is the chapter)."""
        return f"{self.test_set} · {fmt_fraction(self.fraction)} of the labels"


def _cell(r: pd.Series) -> Cell:
    metric = r["metric"]
    n_ok = int(r["n"] - r["n_nan"])
    mean, std = r["mean"], r["std"]
    mean_std = fmt_value(metric, mean) + ("" if not math.isfinite(std) else f" ± {fmt_value(metric, std)}")
    ci = "–" if not math.isfinite(r["ci_low"]) else f"[{fmt_value(metric, r['ci_low'])}, " \
                                                     f"{fmt_value(metric, r['ci_high'])}]"
    rank = "–" if not math.isfinite(r["mean_rank"]) else f"{r['mean_rank']:.2f}"
    return Cell(
        mean_std=mean_std, median=fmt_value(metric, r["median"]), ci=ci, rank=rank,
        p_holm="best" if bool(r["is_best"]) else fmt_p(r["p_holm_vs_best"]),
        marker=WORSE_MARKER if r["marker"] == "†" else "", is_best=bool(r["is_best"]),
        mean=float(mean), median_value=float(r["median"]), mean_rank=float(r["mean_rank"]),
        p_value=0.0 if bool(r["is_best"]) else float(r["p_holm_vs_best"]), n=n_ok, n_nan=int(r["n_nan"]),
    )


def friedman_text(row: dict | None) -> str:
    """``χ²(k−1) = Q, p = …, n = … cases`` or why there is none."""
    if not row:
        return "–"
    if not math.isfinite(row.get("Q", math.nan)):
        return (f"not computed (needs ≥ 3 complete cases and ≥ 2 entries; "
                f"n = {int(row['n'])}, k = {int(row['k'])})")
    p = fmt_p(row["p"])
    p = f"p < {p[1:]}" if p.startswith("<") else f"p = {p}"
    return (f"χ²({int(row['k']) - 1}) = {row['Q']:.2f}, {p}, Kendall's W = {row['W']:.2f}, "
            f"n = {int(row['n'])} complete cases")


def build_sections(lb: Leaderboard, metrics: list[str]) -> list[Section]:
    """One :class:`Section` per (train dataset, test set, fraction), rows in the order of the first metric."""
    out = []
    for train, test, frac in lb.sections():
        present = [m for m in lb.metrics() if not lb.family(train, test, frac, m).empty]
        board = [m for m in metrics if m in present]
        others = [m for m in present if m not in board and stats.metric_direction(m)]
        if not board:
            board, others = others[:1], others[1:]
        order_fam = lb.family(train, test, frac, board[0]) if board else pd.DataFrame()
        rows: dict[tuple, Row] = {}
        for _, r in order_fam.iterrows():
            key = (r["model"], r["pretrain"])
            seeds = (f"{int(r['seeds_min'])}" if r["seeds_min"] == r["seeds_max"]
                     else f"{int(r['seeds_min'])}–{int(r['seeds_max'])}")
            rows[key] = Row(model=r["model"], pretrain=r["pretrain"], entry=r["entry"],
                            pretrain_label=stats.pretrain_label(r["pretrain"]), n=int(r["n"]), seeds=seeds)
        for m in board + others:
            for _, r in lb.family(train, test, frac, m).iterrows():
                key = (r["model"], r["pretrain"])
                if key not in rows:  # an entry without the first metric: append it
                    rows[key] = Row(model=r["model"], pretrain=r["pretrain"], entry=r["entry"],
                                    pretrain_label=stats.pretrain_label(r["pretrain"]), n=int(r["n"]),
                                    seeds="")
                rows[key].cells[m] = _cell(r)
        out.append(Section(
            train_dataset=train, test_set=test, fraction=frac, metrics=board, other_metrics=others,
            rows=list(rows.values()),
            friedman={m: friedman_text(lb.friedman_row(train, test, frac, m)) for m in board + others},
            pairwise={m: lb.pairs(train, test, frac, m) for m in board + others},
            anchor=f"s{len(out) + 1}",
        ))
    return out


@dataclass
class Overview:
    """One train dataset × test set: an entry per row, the first board metric's mean per fraction."""

    train_dataset: str
    test_set: str
    metric: str
    fractions: list[float]
    rows: list[tuple[Row, list[Cell | None]]]


_PRETRAIN_ORDER = {"none": 0, "slo": 1, "faf": 2}


def build_overviews(sections: list[Section]) -> list[Overview]:
    """Per (train dataset, test set), in section order: every entry's cell at every fraction.

    Entries are sorted by model, then scratch, SSL-SLO, SSL-FAF (others after, by name), so that a
    model's variants sit together; the cells keep their best / significance marks.
    """
    groups: dict[tuple[str, str], list[Section]] = {}
    for sec in sections:
        if sec.metrics:
            groups.setdefault((sec.train_dataset, sec.test_set), []).append(sec)
    out = []
    for (train, test), secs in groups.items():
        metric = secs[0].metrics[0]
        secs = sorted(secs, key=lambda x: x.fraction)
        entries: dict[tuple[str, str], Row] = {}
        for sec in secs:
            for row in sec.rows:
                entries.setdefault((row.model, row.pretrain), row)
        order = sorted(entries, key=lambda k: (k[0], _PRETRAIN_ORDER.get(k[1], 9), k[1]))
        by_entry = [{(r.model, r.pretrain): r for r in sec.rows} for sec in secs]
        rows = []
        for key in order:
            cells = [rows_of[key].cells.get(metric) if key in rows_of else None for rows_of in by_entry]
            rows.append((entries[key], cells))
        out.append(Overview(train, test, metric, [sec.fraction for sec in secs], rows))
    return out


def metric_header(metric: str) -> str:
    """``Dice ↑`` / ``Abs. area difference (mm²) ↓``."""
    arrow = {"higher": " ↑", "lower": " ↓"}.get(stats.metric_direction(metric) or "", "")
    return stats.metric_label(metric) + arrow


def settings_lines(settings: dict[str, Any]) -> list[str]:
    """Plain-language description of how the numbers were made."""
    return [
        "Entry = model × pre-training (scratch, SSL-SLO, SSL-FAF) within a train dataset, test set and "
        "label fraction. Each case's metric is averaged over seeds first; cases are paired by case id.",
        f"Mean ± standard deviation, median and {settings['confidence'] * 100:g} % bootstrap confidence "
        f"interval of the mean ({settings['bootstrap_method']}, {settings['bootstrap_resamples']} resamples, "
        f"seed {settings['bootstrap_seed']}) over test cases; NaN values (e.g. HD95 of an empty mask) are "
        "left out and counted.",
        f"p (Holm): {settings['test']}, of each entry against the best entry (best mean), Holm-adjusted "
        f"within each family (test set × fraction × metric). {WORSE_MARKER} marks entries significantly "
        f"worse than the best (adjusted p < {settings['alpha']:g}).",
        "Mean rank: rank of each entry within each case (1 = best), averaged over cases where every entry "
        "has a value; a Friedman test across entries on the same cases.",
        f"SciPy {settings['scipy']}, pingouin {settings['pingouin']}.",
    ]
