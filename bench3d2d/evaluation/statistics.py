"""Statistics for leaderboards (``docs/protocol.md`` §10.4 and §11).

Rules, all applied per *family* = (train dataset, test set, fraction, metric):

* The unit is one test case (scan). Each case's metric is first averaged over seeds
  (:func:`average_seeds`), then cases are paired **by case id**, never by row order.
* Paired Wilcoxon signed-rank test, two-sided, zero differences discarded (``"wilcox"``), p-value by
  SciPy's ``"auto"`` method with no continuity correction: pingouin is called with
  ``correction=False`` so that it gives exactly what ``scipy.stats.wilcoxon`` gives with its defaults.
  Pairs where either value is NaN are dropped and the number of pairs ``n`` is reported.
* Holm correction within each family (pingouin's ``multicomp``; NaN p-values are left out); the raw
  p-value is kept beside the adjusted one.
* Summaries are NaN-aware, with the number of NaN cases reported; ranks and the Friedman test use the
  cases where every entry has a value (complete blocks).
* "Best" and ranks follow the metric's direction (:data:`METRIC_DIRECTION`): higher is better for
  Dice, precision and recall, lower for the absolute area difference and HD95. Metrics without a
  direction (signed area difference, raw areas) are summarised but never ranked or tested.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pingouin as pg
import scipy
import scipy.stats

from bench3d2d.results import CASE_COLUMNS

#: Direction of every metric the harness writes (``evaluation.metrics.METRICS``): which way is better.
METRIC_DIRECTION: dict[str, str] = {
    "dice": "higher",
    "precision": "higher",
    "recall": "higher",
    "area_diff_mm2": "lower",
    "hd95_mm": "lower",
}

#: Display names of metrics (tables and figures); unknown metrics are shown by their column name.
METRIC_LABELS: dict[str, str] = {
    "dice": "Dice",
    "area_diff_mm2": "Abs. area difference (mm²)",
    "area_diff_signed_mm2": "Signed area difference (mm²)",
    "area_pred_mm2": "Predicted area (mm²)",
    "area_ref_mm2": "Reference area (mm²)",
    "precision": "Precision",
    "recall": "Recall",
    "hd95_mm": "HD95 (mm)",
    "interrater_dice": "Inter-rater Dice",
}

#: The metrics of the paper's figures and of the leaderboards' main tables.
HEADLINE_METRICS: tuple[str, ...] = ("dice", "area_diff_mm2")

#: How pre-training values are shown.
PRETRAIN_LABELS: dict[str, str] = {"none": "scratch", "slo": "SSL-SLO", "faf": "SSL-FAF"}

#: Columns of the long per-case table (``cases.csv`` of every run).
#: One family of comparisons (Holm correction is applied within it).
FAMILY: tuple[str, ...] = ("train_dataset", "test_set", "fraction", "metric")
#: One leaderboard entry within a family.
ENTRY: tuple[str, ...] = ("model", "pretrain")

#: SciPy version used for the Wilcoxon p-values (recorded in every report).
SCIPY_VERSION: str = scipy.__version__
PINGOUIN_VERSION: str = pg.__version__


def metric_direction(metric: str) -> str | None:
    """``"higher"``, ``"lower"`` or ``None`` (descriptive only) for a metric name.

    A per-rater metric ``<metric>:<rater>`` (test sets with several raters) has its base metric's
    direction; ``interrater_dice`` is a property of the test set, not of the entries: descriptive.
    """
    return METRIC_DIRECTION.get(str(metric).split(":", 1)[0])


def metric_label(metric: str) -> str:
    """Display name of a metric (``dice:rater2`` -> ``Dice (rater2)``)."""
    base, _, rater = str(metric).partition(":")
    label = METRIC_LABELS.get(base, base)
    if not rater:
        return label
    unit = re.search(r" \([^)]*\)$", label)
    if unit:  # "HD95 (mm)" -> "HD95, rater2 (mm)"
        return f"{label[:unit.start()]}, {rater}{unit.group(0)}"
    return f"{label} ({rater})"


def pretrain_label(pretrain: str) -> str:
    """Display name of a pre-training value: ``none`` -> scratch, ``slo`` -> SSL-SLO, ``faf`` -> SSL-FAF."""
    return PRETRAIN_LABELS.get(str(pretrain), str(pretrain))


def entry_label(model: str, pretrain: str) -> str:
    """``"model (scratch)"``: the name of a leaderboard entry."""
    return f"{model} ({pretrain_label(pretrain)})"


def average_seeds(cases: pd.DataFrame) -> pd.DataFrame:
    """Per-case mean over seeds (NaN-aware), with ``n_seeds`` and ``n_seeds_nan`` per case.

    Input: the long table (:data:`CASE_COLUMNS`). Output: one row per
    (family, entry, case id) with ``value`` = mean of the non-NaN seed values (NaN when all are NaN).
    """
    missing = [c for c in CASE_COLUMNS if c not in cases.columns]
    if missing:
        raise ValueError(f"per-case table lacks column(s) {missing}; expected {list(CASE_COLUMNS)}")
    keys = [*FAMILY, *ENTRY, "case_id"]
    grouped = cases.groupby(keys, sort=True, dropna=False)["value"]
    out = grouped.agg(value="mean", n_seeds="size", n_seeds_nan=lambda v: int(v.isna().sum()))
    out["n_seeds"] = out["n_seeds"].astype(int)
    out["n_seeds_nan"] = out["n_seeds_nan"].astype(int)
    return out.reset_index()


@dataclass(frozen=True)
class WilcoxonResult:
    """A paired Wilcoxon signed-rank test of ``x`` against ``y`` (x - y)."""

    n: int  # pairs with both values present
    n_nonzero: int  # pairs with a non-zero difference (the ones the test uses)
    W: float  # SciPy's statistic: min(R+, R-) for a two-sided test
    p: float  # two-sided p-value (SciPy "auto" method, no continuity correction)
    method: str  # "exact", "permutation" or "normal": what SciPy's "auto" chose
    rbc: float  # matched-pairs rank-biserial correlation (pingouin; positive when x > y)
    cles: float  # common-language effect size P(x > y) (pingouin)

    def to_dict(self) -> dict:
        """Plain dict (for tables)."""
        return asdict(self)


def _auto_method(d: np.ndarray) -> str:
    """The p-value method SciPy's ``method="auto"`` uses for differences ``d`` (zeros included)."""
    nonzero = d[d != 0]
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if d.size > 50:
        return "normal"
    if not ties and nonzero.size == d.size:
        return "exact"
    return "permutation" if d.size <= 13 else "normal"


def paired_wilcoxon(x: pd.Series, y: pd.Series) -> WilcoxonResult:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` vs ``y``, paired by index (case id).

    Pairs where either value is NaN are dropped. With no pair left, or no non-zero difference, the test
    cannot say anything: ``p`` is NaN when ``n == 0``; otherwise SciPy's value is kept (1.0 when all
    differences are zero).
    """
    if not (x.index.is_unique and y.index.is_unique):
        raise ValueError("paired_wilcoxon: case ids must be unique within each entry")
    both = pd.concat({"x": x, "y": y}, axis=1, join="inner").dropna()
    both = both.sort_index()
    xv = both["x"].to_numpy(dtype=float)
    yv = both["y"].to_numpy(dtype=float)
    d = xv - yv
    n, n_nonzero = int(d.size), int(np.count_nonzero(d))
    if n == 0:
        return WilcoxonResult(0, 0, math.nan, math.nan, "none", math.nan, math.nan)
    with warnings.catch_warnings():
        # SciPy warns (division by zero in the z statistic) when every difference is zero.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pg.wilcoxon(xv, yv, alternative="two-sided", correction=False,
                          zero_method="wilcox", method="auto")
    row = res.iloc[0]
    return WilcoxonResult(
        n=n, n_nonzero=n_nonzero, W=float(row["W_val"]), p=float(row["p_val"]),
        method=_auto_method(d), rbc=float(row["RBC"]), cles=float(row["CLES"]),
    )


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (pingouin ``multicomp``); NaN entries stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return p.copy()
    if np.isnan(p).all():
        return p.copy()
    _, adjusted = pg.multicomp(p, method="holm")
    return np.asarray(adjusted, dtype=float)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean (BCa, SciPy), NaNs dropped; seeded, so reproducible.

    NaN bounds with fewer than two values; a zero-width interval when every value is the same.
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return (math.nan, math.nan)
    if np.all(v == v[0]):
        return (float(v[0]), float(v[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            (v,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
            method="BCa", rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa can fail on very skewed tiny samples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.stats.bootstrap(
                (v,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                method="percentile", rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi)


def describe(values: pd.Series) -> dict[str, float]:
    """NaN-aware summary: n, n_nan, mean, std (ddof 1), median, q1, q3."""
    ok = values.dropna().astype(float)
    n_ok = int(ok.size)
    return {
        "n": int(values.size),
        "n_nan": int(values.size - n_ok),
        "mean": float(ok.mean()) if n_ok else math.nan,
        "std": float(ok.std(ddof=1)) if n_ok > 1 else math.nan,
        "median": float(ok.median()) if n_ok else math.nan,
        "q1": float(ok.quantile(0.25)) if n_ok else math.nan,
        "q3": float(ok.quantile(0.75)) if n_ok else math.nan,
    }


def complete_cases(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows (cases) of a case × entry table where every entry has a value."""
    return wide.dropna(axis=0, how="any")


def case_ranks(wide: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Rank of each entry within each complete case (1 = best, ties get the average rank)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")
    full = complete_cases(wide)
    return full.rank(axis=1, method="average", ascending=(direction == "lower"))


def mean_ranks(wide: pd.DataFrame, direction: str) -> pd.Series:
    """Mean rank of each entry over the complete cases (1 = best); NaN when no case is complete."""
    ranks = case_ranks(wide, direction)
    if ranks.empty:
        return pd.Series(math.nan, index=wide.columns, dtype=float)
    return ranks.mean(axis=0)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test across entries on the complete cases."""

    n: int  # complete cases (blocks)
    k: int  # entries
    Q: float  # chi-squared statistic
    p: float
    W: float  # Kendall's coefficient of concordance

    def to_dict(self) -> dict:
        """Plain dict (for tables)."""
        return asdict(self)


def friedman(wide: pd.DataFrame) -> FriedmanResult:
    """Friedman chi-squared test (pingouin) over the complete cases of a case × entry table.

    NaN statistics when fewer than 3 complete cases or 2 entries remain.
    """
    full = complete_cases(wide)
    n, k = full.shape
    if n < 3 or k < 2:
        return FriedmanResult(n, k, math.nan, math.nan, math.nan)
    data = full.copy()
    data.columns = [f"e{i}" for i in range(k)]  # entry labels may hold anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pg.friedman(data.reset_index(drop=True)).iloc[0]
    return FriedmanResult(n, k, float(res["Q"]), float(res["p_unc"]), float(res["W"]))


def best_entry(summary: pd.DataFrame, direction: str) -> object:
    """Index label of the best entry of a summary (columns ``mean``, ``median``): best mean, then median.

    Remaining ties are broken by the index order, so the choice is deterministic.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")
    ok = summary.dropna(subset=["mean"])
    if ok.empty:
        raise ValueError("no entry has a value: cannot choose a best entry")
    sign = -1.0 if direction == "higher" else 1.0

    def key(i: int) -> tuple[float, float, int]:
        median = ok["median"].iloc[i]
        return (sign * ok["mean"].iloc[i], math.inf if math.isnan(median) else sign * median, i)

    return ok.index[min(range(len(ok)), key=key)]
