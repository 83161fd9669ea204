"""``compare``: do two boards (or results folders) reach the same verdicts?

Each side is a published board (a folder with ``summary.csv``), a results folder of ``bench3d2d run`` or a
per-case table; a results folder or table is turned into its leaderboard summary first (patient level, as
``bench3d2d report`` does). The entries of both are matched on (training set, test set, fraction, metric,
model, pre-training), and three kinds of difference are listed:

* **best**: the best entry of a family (one training set, test set, fraction and metric) differs;
* **significance**: an entry's mark against the best (``vs_best``: ``best``, ``n.s.`` or significant) differs;
* **means**: an entry's mean moves by more than ``threshold`` (absolute; only for the metrics in
  ``threshold_metrics``, Dice by default, since a threshold has a metric's unit).

Only the families of ``metrics`` (default: the board's headline metrics) are compared.

Entries present on one side only are listed too. :attr:`Comparison.differs` is true when any of the four is
non-empty; ``bench3d2d compare`` then exits with status 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench3d2d.evaluation.statistics import HEADLINE_METRICS

FAMILY = ("train_dataset", "test_set", "fraction", "metric")
ENTRY = (*FAMILY, "model", "pretrain")
SUMMARY_FILE = "summary.csv"


@dataclass
class Comparison:
    """The differences between two summaries (each a DataFrame; empty when there is none)."""

    best: pd.DataFrame
    significance: pd.DataFrame
    means: pd.DataFrame
    only: pd.DataFrame
    matched: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def differs(self) -> bool:
        """Whether any verdict differs (best entry, significance mark, mean beyond the threshold, entries)."""
        return any(not t.empty for t in (self.best, self.significance, self.means, self.only))


def load_summary(path: str | Path, bootstrap: int = 999, seed: int = 0) -> pd.DataFrame:
    """The leaderboard summary of a board folder, a results folder or a per-case table."""
    path = Path(path)
    if (path / SUMMARY_FILE).is_file():
        summary = pd.read_csv(path / SUMMARY_FILE)
    else:
        from bench3d2d.report.collect import collect, read_cases_file
        from bench3d2d.report.tables import build_leaderboard

        if path.is_dir():
            cases = collect(path).cases
        elif path.is_file():
            cases, _ = read_cases_file(path)
        else:
            raise FileNotFoundError(f"{path}: neither a board folder, a results folder nor a per-case table")
        if cases.empty:
            raise ValueError(f"{path}: no per-case results to compare")
        summary = build_leaderboard(cases, n_resamples=bootstrap, seed=seed, rank_resamples=0).summary
    missing = [c for c in (*ENTRY, "mean", "is_best", "vs_best") if c not in summary.columns]
    if missing:
        raise ValueError(f"{path}: the summary lacks the column(s) {', '.join(missing)}")
    summary = summary.copy()
    summary["fraction"] = summary["fraction"].astype(float)
    summary["pretrain"] = summary["pretrain"].fillna("none").astype(str)
    return summary


def _mark(value: object) -> str:
    text = "" if pd.isna(value) else str(value)
    return text if text in ("best", "n.s.", "") else "significant"


def compare_summaries(
    a: pd.DataFrame,
    b: pd.DataFrame,
    threshold: float = 0.03,
    metrics: tuple[str, ...] = HEADLINE_METRICS,
    threshold_metrics: tuple[str, ...] = ("dice",),
) -> Comparison:
    """The differences between summaries ``a`` and ``b`` (see the module docstring)."""
    cols = [*ENTRY, "mean", "is_best", "vs_best"]
    a, b = a[a["metric"].isin(metrics)], b[b["metric"].isin(metrics)]
    merged = a[cols].merge(b[cols], on=list(ENTRY), how="outer", suffixes=("_a", "_b"), indicator=True)
    only = merged[merged["_merge"] != "both"][[*ENTRY, "_merge"]].rename(columns={"_merge": "side"})
    only["side"] = only["side"].map({"left_only": "A only", "right_only": "B only"})
    both = merged[merged["_merge"] == "both"].drop(columns="_merge").copy()
    both["delta"] = both["mean_b"] - both["mean_a"]
    both["mark_a"], both["mark_b"] = both["vs_best_a"].map(_mark), both["vs_best_b"].map(_mark)
    best = _best_changes(both)
    significance = both[both["mark_a"] != both["mark_b"]][[*ENTRY, "mark_a", "mark_b", "mean_a", "mean_b"]]
    moved = both[both["metric"].isin(threshold_metrics) & (both["delta"].abs() > threshold)]
    means = moved[[*ENTRY, "mean_a", "mean_b", "delta"]]
    keep = [*ENTRY, "mean_a", "mean_b", "delta", "mark_a", "mark_b"]
    return Comparison(
        best.reset_index(drop=True),
        significance.reset_index(drop=True),
        means.reset_index(drop=True),
        only.reset_index(drop=True),
        both[keep].reset_index(drop=True),
    )


def _best_changes(both: pd.DataFrame) -> pd.DataFrame:
    """Families whose best entry differs: one row with the best of each side."""
    rows = []
    for key, fam in both.groupby(list(FAMILY), sort=True):
        best_a, best_b = _bests(fam, "is_best_a"), _bests(fam, "is_best_b")
        if best_a != best_b:
            rows.append({**dict(zip(FAMILY, key)), "best_a": ", ".join(best_a), "best_b": ", ".join(best_b)})
    return pd.DataFrame(rows, columns=[*FAMILY, "best_a", "best_b"])


def _bests(fam: pd.DataFrame, column: str) -> list[str]:
    return sorted(f"{m} ({p})" for m, p, x in zip(fam["model"], fam["pretrain"], fam[column]) if _true(x))


def _true(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def compare(
    a: str | Path, b: str | Path, threshold: float = 0.03, metrics: tuple[str, ...] = HEADLINE_METRICS
) -> Comparison:
    """Compare two boards, results folders or per-case tables (see the module docstring)."""
    return compare_summaries(load_summary(a), load_summary(b), threshold, metrics)
