"""Leaderboard tables from the long per-case table: summaries, tests against the best, all pairs, Friedman.

A *family* is (train dataset, test set, fraction, metric); an *entry* is (model, pre-training) within
it. Seeds are averaged per case first; cases are paired by case id. See
:mod:`bench3d2d.evaluation.statistics`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench3d2d.evaluation import statistics as stats

SECTION: tuple[str, ...] = ("train_dataset", "test_set", "fraction")


@dataclass
class Leaderboard:
    """Every table of a report. ``summary`` has one row per family and entry, ``pairwise`` one per
    family and pair of entries, ``friedman`` one per family; ``settings`` records how they were made."""

    cases: pd.DataFrame
    case_means: pd.DataFrame
    summary: pd.DataFrame
    pairwise: pd.DataFrame
    friedman: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def sections(self) -> list[tuple[str, str, float]]:
        """The (train dataset, test set, fraction) sections, in sorted order."""
        if self.summary.empty:
            return []
        keys = self.summary.loc[:, list(SECTION)].drop_duplicates()
        keys = keys.sort_values(list(SECTION), kind="stable")
        return [tuple(row) for row in keys.itertuples(index=False, name=None)]

    def metrics(self) -> list[str]:
        """Metrics present, headline metrics first, then directed ones, then the rest."""
        present = list(dict.fromkeys(self.summary["metric"])) if not self.summary.empty else []
        head = [m for m in stats.HEADLINE_METRICS if m in present]
        directed = sorted(m for m in present if m not in head and stats.metric_direction(m))
        rest = sorted(m for m in present if m not in head and m not in directed)
        return head + directed + rest

    def family(self, train_dataset: str, test_set: str, fraction: float, metric: str) -> pd.DataFrame:
        """Summary rows of one family, best first (board order)."""
        s = self.summary
        sel = ((s["train_dataset"] == train_dataset) & (s["test_set"] == test_set)
               & (s["fraction"] == fraction) & (s["metric"] == metric))
        return s[sel].sort_values("position", kind="stable")

    def pairs(self, train_dataset: str, test_set: str, fraction: float, metric: str) -> pd.DataFrame:
        """Pairwise rows of one family."""
        p = self.pairwise
        if p.empty:
            return p
        sel = ((p["train_dataset"] == train_dataset) & (p["test_set"] == test_set)
               & (p["fraction"] == fraction) & (p["metric"] == metric))
        return p[sel]

    def friedman_row(self, train_dataset: str, test_set: str, fraction: float, metric: str) -> dict | None:
        """The Friedman result of one family, or None."""
        f = self.friedman
        if f.empty:
            return None
        sel = ((f["train_dataset"] == train_dataset) & (f["test_set"] == test_set)
               & (f["fraction"] == fraction) & (f["metric"] == metric))
        rows = f[sel]
        return None if rows.empty else rows.iloc[0].to_dict()


def _entry_order(wide: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(wide.columns, key=lambda e: (str(e[0]), str(e[1])))


def _family_tables(
    key: tuple, group: pd.DataFrame, *, alpha: float, confidence: float, n_resamples: int, seed: int,
) -> tuple[list[dict], list[dict], dict]:
    """Summary rows, pairwise rows and the Friedman row of one family."""
    fam = dict(zip(stats.FAMILY, key))
    metric = fam["metric"]
    direction = stats.metric_direction(metric)
    wide = group.pivot(index="case_id", columns=list(stats.ENTRY), values="value")
    wide.columns = [tuple(c) for c in wide.columns]
    entries = _entry_order(wide)
    wide = wide.loc[:, entries]
    seeds = group.groupby(list(stats.ENTRY))["n_seeds"].agg(["min", "max"])

    rows: dict[tuple, dict] = {}
    for e in entries:
        own = group[(group["model"] == e[0]) & (group["pretrain"] == e[1])]["value"]
        desc = stats.describe(own)
        lo, hi = stats.bootstrap_ci(own.to_numpy(dtype=float), confidence, n_resamples, seed)
        rows[e] = {
            **fam, "model": e[0], "pretrain": e[1], "entry": stats.entry_label(*e),
            "direction": direction or "", **desc, "ci_low": lo, "ci_high": hi,
            "seeds_min": int(seeds.loc[e, "min"]), "seeds_max": int(seeds.loc[e, "max"]),
        }
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index = list(rows)  # keep tuple keys

    pairs: list[dict] = []
    friedman_row: dict = {**fam, "n": 0, "k": len(entries), "Q": math.nan, "p": math.nan, "W": math.nan}
    if direction is None or summary["mean"].isna().all():
        for e in entries:
            rows[e].update(position=np.nan, is_best=False, mean_rank=math.nan, n_rank_cases=0,
                           n_vs_best=0, W_vs_best=math.nan, p_vs_best=math.nan, p_holm_vs_best=math.nan,
                           rbc_vs_best=math.nan, vs_best="", marker="")
        return list(rows.values()), pairs, friedman_row

    best = stats.best_entry(summary, direction)
    sign = 1.0 if direction == "higher" else -1.0

    def board_key(e: tuple) -> tuple:
        mean = rows[e]["mean"]
        return (e != best, math.inf if math.isnan(mean) else -sign * mean, entries.index(e))

    order = sorted(entries, key=board_key)
    ranks = stats.mean_ranks(wide, direction)
    n_rank = len(stats.complete_cases(wide))
    others = [e for e in order if e != best]
    # every pair once; "entry vs best" is the pair (best, entry) read the other way round (same W, n and
    # p; the rank-biserial correlation changes sign)
    pair_list = list(itertools.combinations(order, 2))
    pair_tests = [stats.paired_wilcoxon(wide[a], wide[b]) for a, b in pair_list]
    tests = {b: t for (a, b), t in zip(pair_list, pair_tests) if a == best}
    adjusted = stats.holm([tests[e].p for e in others])
    for pos, e in enumerate(order, start=1):
        r = rows[e]
        r.update(position=pos, is_best=(e == best), mean_rank=float(ranks.get(e, math.nan)),
                 n_rank_cases=n_rank)
        if e == best:
            r.update(n_vs_best=int(r["n"] - r["n_nan"]), W_vs_best=math.nan, p_vs_best=math.nan,
                     p_holm_vs_best=math.nan, rbc_vs_best=math.nan, vs_best="best", marker="")
            continue
        t = tests[e]
        p_adj = float(adjusted[others.index(e)])
        rbc = -t.rbc  # entry vs best
        worse_side = (rbc < 0) if direction == "higher" else (rbc > 0)
        verdict = "n.s." if not (p_adj < alpha) else ("worse" if worse_side else "better")
        r.update(n_vs_best=t.n, W_vs_best=t.W, p_vs_best=t.p, p_holm_vs_best=p_adj, rbc_vs_best=rbc,
                 wilcoxon_method=t.method, vs_best=verdict, marker="†" if verdict == "worse" else "")

    pair_adj = stats.holm([t.p for t in pair_tests])
    for (a, b), t, p_adj in zip(pair_list, pair_tests, pair_adj):
        both = wide[[a, b]].dropna()
        pairs.append({
            **fam, "model_a": a[0], "pretrain_a": a[1], "entry_a": stats.entry_label(*a),
            "model_b": b[0], "pretrain_b": b[1], "entry_b": stats.entry_label(*b),
            "n": t.n, "n_nonzero": t.n_nonzero,
            "mean_diff": float((both[a] - both[b]).mean()) if t.n else math.nan,
            "W": t.W, "p": t.p, "p_holm": float(p_adj), "rbc": t.rbc, "cles": t.cles, "method": t.method,
            "significant": bool(p_adj < alpha),
        })
    fr = stats.friedman(wide)
    friedman_row.update(fr.to_dict())
    return [rows[e] for e in order], pairs, friedman_row


SUMMARY_COLUMNS = [
    *stats.FAMILY, "position", "model", "pretrain", "entry", "direction", "n", "n_nan", "mean", "std",
    "median", "q1", "q3", "ci_low", "ci_high", "mean_rank", "n_rank_cases", "is_best", "n_vs_best",
    "W_vs_best", "p_vs_best", "p_holm_vs_best", "rbc_vs_best", "wilcoxon_method", "vs_best", "marker",
    "seeds_min", "seeds_max",
]
PAIRWISE_COLUMNS = [
    *stats.FAMILY, "model_a", "pretrain_a", "entry_a", "model_b", "pretrain_b", "entry_b", "n", "n_nonzero",
    "mean_diff", "W", "p", "p_holm", "rbc", "cles", "method", "significant",
]
FRIEDMAN_COLUMNS = [*stats.FAMILY, "n", "k", "Q", "p", "W"]


def build_leaderboard(
    cases: pd.DataFrame,
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Leaderboard:
    """All leaderboard tables of a long per-case table (columns :data:`statistics.CASE_COLUMNS`)."""
    means = stats.average_seeds(cases)
    summary_rows: list[dict] = []
    pair_rows: list[dict] = []
    friedman_rows: list[dict] = []
    for key, group in means.groupby(list(stats.FAMILY), sort=True):
        s, p, f = _family_tables(key, group, alpha=alpha, confidence=confidence,
                                 n_resamples=n_resamples, seed=seed)
        summary_rows += s
        pair_rows += p
        friedman_rows.append(f)
    summary = pd.DataFrame(summary_rows).reindex(columns=SUMMARY_COLUMNS)
    summary["is_best"] = summary["is_best"].fillna(False).astype(bool)
    summary["marker"] = summary["marker"].fillna("")
    summary["vs_best"] = summary["vs_best"].fillna("")
    summary["wilcoxon_method"] = summary["wilcoxon_method"].fillna("")
    settings = {
        "alpha": alpha, "confidence": confidence, "bootstrap_resamples": n_resamples, "bootstrap_seed": seed,
        "bootstrap_method": "BCa, or percentile where BCa fails",
        "test": "paired Wilcoxon signed-rank, two-sided, zero differences discarded ('wilcox'), "
                "SciPy 'auto' p-value, no continuity correction",
        "correction": "Holm within each family (train dataset, test set, fraction, metric)",
        "scipy": stats.SCIPY_VERSION, "pingouin": stats.PINGOUIN_VERSION,
        "metric_direction": dict(stats.METRIC_DIRECTION),
    }
    return Leaderboard(
        cases=cases, case_means=means, summary=summary,
        pairwise=pd.DataFrame(pair_rows).reindex(columns=PAIRWISE_COLUMNS),
        friedman=pd.DataFrame(friedman_rows).reindex(columns=FRIEDMAN_COLUMNS),
        settings=settings,
    )
