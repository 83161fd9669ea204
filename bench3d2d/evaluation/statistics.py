"""Statistics for leaderboards (``docs/leaderboards.md``), computed with NumPy and SciPy only.

Rules, all applied per *family* = (train dataset, test set, fraction, metric):

* **Seeds, then unit.** Each case's metric is first averaged over seeds (:func:`average_seeds`); then,
  with the default unit ``patient``, the cases of each patient are averaged (:func:`unit_values`), and
  entries are paired **by patient id** (by case id with unit ``case``), never by row order. Scans of
  one patient are not independent: tests over scans are too optimistic. The report builds every
  number (mean, spread, interval, best, ranks, tests) from these unit values.
* **Ties on the stored precision.** Values and paired differences are rounded to
  :data:`TIE_DECIMALS` decimals (:func:`on_stored_precision`) before zeros and ties are decided, so
  floating-point noise never breaks a tie.
* **Test.** Paired Wilcoxon signed-rank test, two-sided; zero differences are discarded before ranking
  (``zero_method="wilcox"``), ties get mid-ranks; the p-value is **exact** (the complete sign-flip
  permutation distribution of the signed-rank statistic, ties included) for up to
  :data:`EXACT_MAX` non-zero differences, else SciPy's normal approximation with tie correction and no
  continuity correction. All differences zero: p = 1 at every n.
* **Effect sizes** beside every test: the Hodges-Lehmann estimate (median of the Walsh averages of the
  paired differences) with its distribution-free confidence interval (unadjusted), and the paired
  CLES P(d > 0) + P(d = 0) / 2.
* **Holm** (:func:`holm`) over the p-values of one family; which pairs form the family is the
  report's rule (``bench3d2d.report.pairs``).
* **Small n.** Below :data:`SMALL_N` units, the interval of a mean is a t-interval
  (:func:`mean_interval`) and the report shows no ranking stability; the smallest attainable p
  (:func:`min_attainable_p`) counts non-zero differences.
* Summaries are NaN-aware, with the number of NaN units reported; ranks and the Friedman test use the
  units where every entry has a value (complete blocks).
* "Best" and ranks follow the metric's direction (:data:`METRIC_DIRECTION`): higher is better for
  Dice, precision and recall, lower for the absolute area difference and HD95. Metrics without a
  direction (signed area difference, raw areas) are summarised but never ranked or tested. No entry
  is "best" when the top means tie.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
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

#: One family of comparisons (Holm correction is applied within it).
FAMILY: tuple[str, ...] = ("train_dataset", "test_set", "fraction", "metric")
#: One leaderboard entry within a family.
ENTRY: tuple[str, ...] = ("model", "pretrain")

#: SciPy version used for the Wilcoxon p-values (recorded in every report).
SCIPY_VERSION: str = scipy.__version__
#: Units of analysis for tests and intervals.
UNITS: tuple[str, ...] = ("patient", "case")
#: Up to this many non-zero differences the Wilcoxon p-value is exact (the full permutation distribution).
EXACT_MAX = 50
#: Stored precision of ties: paired differences and values are rounded to this many decimals before
#: zeros and ties are decided, so that floating-point noise (a difference of 1e-16 from summing in
#: another order) never breaks a tie. Metric values are stored to far fewer significant digits.
TIE_DECIMALS = 9
#: Below this many units (patients) a family has "small n": intervals are t-intervals on the unit
#: values instead of bootstrap intervals, and ranking stability is not shown (a bootstrap of fewer
#: than 10 units has too few distinct resamples: 3 patients give 10).
SMALL_N = 10


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
        return f"{label[: unit.start()]}, {rater}{unit.group(0)}"
    return f"{label} ({rater})"


def pretrain_label(pretrain: str) -> str:
    """Display name of a pre-training value: ``none`` -> scratch, ``slo`` -> SSL-SLO, ``faf`` -> SSL-FAF."""
    return PRETRAIN_LABELS.get(str(pretrain), str(pretrain))


def entry_label(model: str, pretrain: str) -> str:
    """``"model (scratch)"``: the name of a leaderboard entry."""
    return f"{model} ({pretrain_label(pretrain)})"


def _with_patients(cases: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in CASE_COLUMNS if c not in cases.columns and c != "patient_id"]
    if missing:
        raise ValueError(f"per-case table lacks column(s) {missing}; expected {list(CASE_COLUMNS)}")
    if "patient_id" not in cases.columns:
        cases = cases.assign(patient_id="")
    return cases.assign(patient_id=cases["patient_id"].fillna("").astype(str))


def average_seeds(cases: pd.DataFrame) -> pd.DataFrame:
    """Per-case mean over seeds (NaN-aware), with ``n_seeds`` and ``n_seeds_nan`` per case.

    Input: the long table (:data:`CASE_COLUMNS`; ``patient_id`` may be missing). Output: one row per
    (family, entry, case id) with its ``patient_id`` and ``value`` = mean of the non-NaN seed values.
    """
    cases = _with_patients(cases)
    keys = [*FAMILY, *ENTRY, "case_id"]
    grouped = cases.groupby(keys, sort=True, dropna=False)
    out = grouped["value"].agg(value="mean", n_seeds="size", n_seeds_nan=lambda v: int(v.isna().sum()))
    out["patient_id"] = grouped["patient_id"].first()
    out["n_seeds"] = out["n_seeds"].astype(int)
    out["n_seeds_nan"] = out["n_seeds_nan"].astype(int)
    return out.reset_index()


def patients_known(cases: pd.DataFrame) -> bool:
    """Whether every row of a per-case table names its patient (so that the unit can be the patient)."""
    return (
        "patient_id" in cases.columns
        and not cases.empty
        and bool((cases["patient_id"].fillna("").astype(str).str.strip() != "").all())
    )


def unit_values(means: pd.DataFrame, unit: str = "patient") -> pd.DataFrame:
    """Seed-averaged cases (:func:`average_seeds`) aggregated to the unit of analysis.

    One row per (family, entry, unit): ``unit_id`` (patient or case id), ``value`` = mean of the unit's
    non-NaN cases (NaN when all are NaN), ``n_scans`` cases, ``n_ok`` non-NaN cases and ``value_sum``
    (their sum; ``value_sum / n_ok`` over resampled units is the cluster bootstrap's statistic).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    if unit == "patient" and (means["patient_id"].astype(str).str.strip() == "").any():
        raise ValueError(
            "unit 'patient' needs the patient of every case, but some rows have no "
            "patient_id (results written before the column existed?); use unit 'case'"
        )
    df = means.assign(unit_id=means["patient_id"] if unit == "patient" else means["case_id"])
    grouped = df.groupby([*FAMILY, *ENTRY, "unit_id"], sort=True, dropna=False)["value"]
    out = grouped.agg(value="mean", n_scans="size", n_ok="count", value_sum="sum")
    return out.reset_index()


def seed_spread(cases: pd.DataFrame) -> pd.DataFrame:
    """Seed-to-seed spread per (family, entry): mean over cases of each seed, then their number, SD
    (ddof 1; NaN with one seed), minimum and maximum (``n_seed_runs``, ``seed_sd``, ``seed_min``,
    ``seed_max``)."""
    per_seed = cases.groupby([*FAMILY, *ENTRY, "seed"], sort=True, dropna=False)["value"].mean()
    g = per_seed.groupby(level=list(range(len(FAMILY) + len(ENTRY))), sort=True, dropna=False)
    out = pd.DataFrame(
        {"n_seed_runs": g.size(), "seed_sd": g.std(ddof=1), "seed_min": g.min(), "seed_max": g.max()}
    )
    return out.reset_index()


def _signed_rank_null(doubled_ranks: np.ndarray) -> np.ndarray:
    """Null distribution of 2 R+ (twice the sum of positive ranks) under random signs: P(2 R+ = s).

    Exact for mid-ranks (doubled to integers) by dynamic programming over the ranks.
    """
    dist = np.zeros(int(doubled_ranks.sum()) + 1)
    dist[0] = 1.0
    for r in doubled_ranks.astype(int):
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: dist.size - r]
        dist = (dist + shifted) / 2.0
    return dist


def on_stored_precision(values: Any) -> np.ndarray:
    """Values (or paired differences) rounded to :data:`TIE_DECIMALS` decimals, with -0.0 made 0.0:
    the numbers zeros and ties are decided on."""
    return np.round(np.asarray(values, dtype=float), TIE_DECIMALS) + 0.0


def min_attainable_p(n: int) -> float:
    """The smallest two-sided p-value any Wilcoxon signed-rank test can give with ``n`` non-zero
    differences (zeros are discarded before ranking, so they do not count).

    Exact test (n <= :data:`EXACT_MAX`): 2 / 2^n, all differences of one sign. Beyond: the normal
    approximation at the largest possible statistic.
    """
    if n <= 0:
        return 1.0
    if n <= EXACT_MAX:
        return min(1.0, 2.0 ** (1 - n))
    z = (n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return float(2 * scipy.stats.norm.sf(z))


def wilcoxon_p(d: np.ndarray) -> tuple[float, float, str]:
    """(statistic, two-sided p, method) of the signed-rank test of paired differences ``d``.

    Differences are taken on the stored precision (:func:`on_stored_precision`), then zeros are
    discarded (``"wilcox"``); the statistic is SciPy's min(R+, R-). Exact permutation p-value
    up to :data:`EXACT_MAX` non-zero differences, else SciPy's normal approximation (tie-corrected,
    no continuity correction). All differences zero (or none): statistic 0, p = 1, method ``"all zero"``.
    """
    nz = on_stored_precision(d)
    nz = nz[nz != 0]
    if nz.size == 0:
        return 0.0, 1.0, "all zero"
    ranks = scipy.stats.rankdata(np.abs(nz))
    r_plus = float(ranks[nz > 0].sum())
    statistic = min(r_plus, float(ranks.sum()) - r_plus)
    if nz.size > EXACT_MAX:
        res = scipy.stats.wilcoxon(nz, zero_method="wilcox", correction=False, method="asymptotic")
        return float(res.statistic), float(res.pvalue), "normal"
    doubled = np.rint(2 * ranks).astype(int)
    dist = _signed_rank_null(doubled)
    t = round(2 * r_plus)
    cdf, sf = float(dist[: t + 1].sum()), float(dist[t:].sum())
    return statistic, min(1.0, 2.0 * min(cdf, sf)), "exact"


def hodges_lehmann(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of the paired shift (median of the Walsh averages) and its
    distribution-free confidence interval (order statistics of the Walsh averages at the signed-rank
    critical value; NaN bounds when ``n`` is too small for the confidence asked)."""
    d = np.asarray(d, dtype=float)
    n = d.size
    if n == 0:
        return math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    est = float(np.median(walsh))
    m = walsh.size
    alpha = 1 - confidence
    if n <= EXACT_MAX:
        cdf = np.cumsum(_signed_rank_null(2 * np.arange(1, n + 1)))[::2]  # P(T <= c), c = 0, 1, ...
        ok = np.nonzero(cdf <= alpha / 2)[0]
        if ok.size == 0:
            return est, math.nan, math.nan
        c = int(ok[-1])  # P(T <= c) <= alpha / 2: the interval drops the c smallest and c largest averages
    else:
        c = max(
            0, math.floor(m / 2 - scipy.stats.norm.isf(alpha / 2) * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))
        )
    return est, float(walsh[c]), float(walsh[m - 1 - c])


@dataclass(frozen=True)
class PairTest:
    """A paired comparison of ``x`` against ``y`` (differences x - y), with effect sizes."""

    n: int  # pairs (units) with both values present
    n_nonzero: int  # pairs with a non-zero difference on the stored precision (the ones the test ranks)
    W: float  # min(R+, R-)
    p: float  # two-sided p-value
    method: str  # "exact", "normal", "all zero" or "none"
    p_min: float  # smallest p-value a signed-rank test can give with n_nonzero differences
    mean_diff: float
    hl: float  # Hodges-Lehmann estimate of the shift x - y
    hl_low: float
    hl_high: float
    cles: float  # paired common-language effect size P(x > y) + P(x = y) / 2
    rbc: float  # matched-pairs rank-biserial correlation (R+ - R-) / (R+ + R-); positive when x > y

    def to_dict(self) -> dict:
        """Plain dict (for tables)."""
        return asdict(self)


def paired_test(x: pd.Series, y: pd.Series, confidence: float = 0.95) -> PairTest:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` vs ``y``, paired by index (unit id), with the
    Hodges-Lehmann shift, its interval (unadjusted: not corrected for the other pairs) and the paired
    CLES. Differences are taken on the stored precision (:func:`on_stored_precision`), so a difference
    of floating-point noise is a zero and a tie. Pairs where either value is NaN are dropped; no pair
    left: NaN p-value (the pair is left out of Holm)."""
    if not (x.index.is_unique and y.index.is_unique):
        raise ValueError("paired_test: unit ids must be unique within each entry")
    both = pd.concat({"x": x, "y": y}, axis=1, join="inner").dropna().sort_index()
    d = on_stored_precision(both["x"].to_numpy(dtype=float) - both["y"].to_numpy(dtype=float))
    n = int(d.size)
    if n == 0:
        nan = math.nan
        return PairTest(0, 0, nan, nan, "none", 1.0, nan, nan, nan, nan, nan, nan)
    stat, p, method = wilcoxon_p(d)
    nz = d[d != 0]
    ranks = scipy.stats.rankdata(np.abs(nz)) if nz.size else np.zeros(0)
    r_plus, total = float(ranks[nz > 0].sum()), float(ranks.sum())
    hl, lo, hi = hodges_lehmann(d, confidence)
    return PairTest(
        n=n,
        n_nonzero=int(nz.size),
        W=stat,
        p=p,
        method=method,
        p_min=min_attainable_p(int(nz.size)),
        mean_diff=float(d.mean()),
        hl=hl,
        hl_low=lo,
        hl_high=hi,
        cles=float((d > 0).mean() + 0.5 * (d == 0).mean()),
        rbc=(2 * r_plus - total) / total if total else 0.0,
    )


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and are not counted in the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.nonzero(~np.isnan(p))[0]
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def cluster_bootstrap_ci(
    sums: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Cluster (unit) bootstrap interval of the mean over cases: resample units (patients) with
    replacement, statistic = sum of their case values / number of their cases. BCa (SciPy), percentile
    where BCa fails; seeded. With one case per unit this is the ordinary bootstrap of the mean.

    Units without a value (``counts == 0``) are left out; NaN bounds with fewer than two units.
    """
    s, c = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    keep = c > 0
    s, c = s[keep], c[keep]
    if s.size < 2:
        return (math.nan, math.nan)
    ratio = s / c
    if np.allclose(ratio, ratio[0], rtol=0, atol=0):
        return (float(ratio[0]), float(ratio[0]))

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.sum(axis=axis) / b.sum(axis=axis)

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.stats.bootstrap(
                (s, c),
                statistic,
                paired=True,
                vectorized=True,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):  # BCa can fail on very skewed tiny samples
            break
    return (lo, hi)


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of independent values (NaNs dropped): mean ± t(n-1) · sd / √n.
    NaN bounds with fewer than two values; the mean itself when every value is the same."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return (math.nan, math.nan)
    mean, se = float(v.mean()), float(v.std(ddof=1)) / math.sqrt(v.size)
    if se == 0:
        return (mean, mean)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, v.size - 1)) * se
    return (mean - half, mean + half)


def mean_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float, str]:
    """Interval of the mean of unit values (one per patient): ``(low, high, method)``.

    Below :data:`SMALL_N` units a t-interval (:func:`t_interval`, method ``"t"``): a bootstrap of 3
    patients has 10 distinct resamples and gives intervals far too narrow. From :data:`SMALL_N` units on
    the bootstrap of the mean (:func:`bootstrap_ci`, BCa, percentile where BCa fails; ``"bootstrap"``).
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < SMALL_N:
        return (*t_interval(v, confidence), "t")
    return (*bootstrap_ci(v, confidence, n_resamples, seed), "bootstrap")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the mean of independent values (NaNs dropped): :func:`cluster_bootstrap_ci`
    with one value per unit."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return cluster_bootstrap_ci(v, np.ones_like(v), confidence, n_resamples, seed)


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
    """Rows (units) of a unit × entry table where every entry has a value."""
    return wide.dropna(axis=0, how="any")


def case_ranks(wide: pd.DataFrame, direction: str, last: Sequence = ()) -> pd.DataFrame:
    """Rank of each entry within each complete unit (1 = best, ties get the average rank), on the
    stored precision (:func:`on_stored_precision`).

    ``last``: entries (columns) ranked after all the others in every unit, whatever their values
    (failed fits: a model that predicted nothing never outranks one that works); they are ranked among
    themselves after the others.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")
    full = complete_cases(wide)
    full = pd.DataFrame(
        on_stored_precision(full.to_numpy(dtype=float)), index=full.index, columns=full.columns
    )
    ascending = direction == "lower"
    tail = [c for c in full.columns if c in set(last)]
    head = [c for c in full.columns if c not in set(last)]
    ranks = full.loc[:, head].rank(axis=1, method="average", ascending=ascending)
    if tail:
        behind = full.loc[:, tail].rank(axis=1, method="average", ascending=ascending) + len(head)
        ranks = pd.concat([ranks, behind], axis=1)
    return ranks.loc[:, list(full.columns)]


def mean_ranks(wide: pd.DataFrame, direction: str, last: Sequence = ()) -> pd.Series:
    """Mean rank of each entry over the complete units (1 = best; ``last`` as :func:`case_ranks`);
    NaN when no unit is complete."""
    ranks = case_ranks(wide, direction, last)
    if ranks.empty:
        return pd.Series(math.nan, index=wide.columns, dtype=float)
    return ranks.mean(axis=0)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test across entries on the complete units; ``reason`` says why it was not computed, or
    what limits a computed one (entries with identical values everywhere)."""

    n: int  # complete units (blocks)
    k: int  # entries
    Q: float  # chi-squared statistic (tie-corrected, as scipy.stats.friedmanchisquare)
    p: float  # chi-squared approximation, k - 1 degrees of freedom
    W: float  # Kendall's coefficient of concordance Q / (n (k - 1))
    reason: str = ""

    def to_dict(self) -> dict:
        """Plain dict (for tables)."""
        return asdict(self)


def friedman(wide: pd.DataFrame) -> FriedmanResult:
    """Friedman chi-squared test over the complete units of a unit × entry table (tie-corrected).

    Not computed (NaN, with the reason) with fewer than 2 entries or 2 complete units, or when every
    entry ties within every unit (no rank information at all).
    """
    full = complete_cases(wide)
    n, k = full.shape
    nan = math.nan
    if k < 2:
        return FriedmanResult(n, k, nan, nan, nan, f"needs ≥ 2 entries (k = {k})")
    if n < 2:
        return FriedmanResult(n, k, nan, nan, nan, f"needs ≥ 2 complete units (n = {n})")
    data = on_stored_precision(full.to_numpy(dtype=float))
    ranks = scipy.stats.rankdata(data, axis=1)
    ties = 0.0
    for row in data:
        _, t = np.unique(row, return_counts=True)
        ties += float((t**3 - t).sum())
    denominator = 1.0 - ties / (n * k * (k * k - 1))
    if denominator <= 1e-12:
        return FriedmanResult(n, k, nan, nan, nan, f"every entry ties in every one of the n = {n} units")
    r = ranks.sum(axis=0)
    q = (12.0 / (n * k * (k + 1)) * float((r**2).sum()) - 3.0 * n * (k + 1)) / denominator
    distinct = len({tuple(col) for col in data.T})
    note = (
        (
            f"{k - distinct} of the {k} entries repeat another entry's values in every unit: the test "
            f"tells {distinct} distinct groups apart, not {k} entries"
        )
        if distinct < k
        else ""
    )
    p = float(scipy.stats.chi2.sf(q, k - 1))
    return FriedmanResult(n, k, float(q), p, float(q / (n * (k - 1))), note)


def best_entry(summary: pd.DataFrame, direction: str) -> object | None:
    """Index label of the entry with the best mean; None when the best means tie (no "best" then).

    Means within 1e-12 (relative) of each other tie.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")
    ok = summary["mean"].dropna()
    if ok.empty:
        raise ValueError("no entry has a value: cannot choose a best entry")
    sign = -1.0 if direction == "higher" else 1.0
    keyed = (sign * ok).sort_values(kind="stable")
    if len(keyed) > 1 and math.isclose(keyed.iloc[0], keyed.iloc[1], rel_tol=1e-12, abs_tol=1e-15):
        return None
    return keyed.index[0]


def rank_bootstrap(
    sums: pd.DataFrame,
    counts: pd.DataFrame,
    direction: str,
    n_resamples: int = 1000,
    seed: int = 0,
    last: Sequence = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Ranking stability (challengeR): resample units (rows) with replacement, rank the entries
    (columns) by their mean over the resampled units (sum / count; with one value per unit, the mean of
    the unit values), and compare with the full ranking. Entries in ``last`` (failed fits) are ranked
    after all the others in every resample (tied among themselves).

    Returns the rank distribution (entries × ranks 1..k: fraction of resamples) and Kendall's tau
    between each bootstrap ranking and the full one (SciPy's tau-b). Only units where every entry has
    a value are used.
    """
    ok = counts.gt(0).all(axis=1)
    s, c = sums[ok].to_numpy(dtype=float), counts[ok].to_numpy(dtype=float)
    k = s.shape[1]
    dist = pd.DataFrame(0.0, index=sums.columns, columns=range(1, k + 1))
    if s.shape[0] < 2 or k < 2:
        return dist, np.array([])
    sign = -1.0 if direction == "higher" else 1.0
    # failed entries sort behind every other (a key far above any value; they tie among themselves)
    behind = np.array([c_ in set(last) for c_ in sums.columns], dtype=float) * 1e300
    full = scipy.stats.rankdata(on_stored_precision(sign * s.sum(0) / c.sum(0)) + behind, method="min")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, s.shape[0], size=(n_resamples, s.shape[0]))
    means = on_stored_precision(sign * s[idx].sum(axis=1) / c[idx].sum(axis=1)) + behind
    ranks = scipy.stats.rankdata(means, axis=1, method="min").astype(int)
    taus = np.empty(n_resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(n_resamples):
            taus[b] = scipy.stats.kendalltau(full, ranks[b]).statistic
    for j in range(k):
        counts_j = np.bincount(ranks[:, j], minlength=k + 1)[1:]
        dist.iloc[j] = counts_j / n_resamples
    return dist, taus
