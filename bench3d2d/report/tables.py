"""Leaderboard tables from the long per-case table: summaries, all pairs, Friedman, ranking stability.

A *family* is (train dataset, test set, fraction, metric); an *entry* is (model, pre-training) within
it. Seeds are averaged per case first, then cases per patient (the default unit), and every number
of a family comes from these unit values: mean, spread, interval, best, ranks, rank bootstrap,
robustness rankings and tests (units paired by id). One family rule: the pairs of distinct, working
entries are Holm-adjusted together (:mod:`bench3d2d.report.pairs`), and the † marks (entry vs best)
read those same adjusted p-values. Failed fits are never best and ranked after every working entry.
See :mod:`bench3d2d.evaluation.statistics`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.report import robustness
from bench3d2d.report.pairs import pair_table

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
    units: pd.DataFrame = field(default_factory=pd.DataFrame)  # values per unit (patient or case)
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)  # bootstrap rank distribution
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)  # per seed and test set: failed fit or not
    warnings: list[str] = field(default_factory=list)

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
        sel = (
            (s["train_dataset"] == train_dataset)
            & (s["test_set"] == test_set)
            & (s["fraction"] == fraction)
            & (s["metric"] == metric)
        )
        return s[sel].sort_values("position", kind="stable")

    def pairs(self, train_dataset: str, test_set: str, fraction: float, metric: str) -> pd.DataFrame:
        """Pairwise rows of one family."""
        p = self.pairwise
        if p.empty:
            return p
        sel = (
            (p["train_dataset"] == train_dataset)
            & (p["test_set"] == test_set)
            & (p["fraction"] == fraction)
            & (p["metric"] == metric)
        )
        return p[sel]

    def friedman_row(self, train_dataset: str, test_set: str, fraction: float, metric: str) -> dict | None:
        """The family row (Friedman, n, reachability, ranking stability) of one family, or None."""
        f = self.friedman
        if f.empty:
            return None
        sel = (
            (f["train_dataset"] == train_dataset)
            & (f["test_set"] == test_set)
            & (f["fraction"] == fraction)
            & (f["metric"] == metric)
        )
        rows = f[sel]
        return None if rows.empty else rows.iloc[0].to_dict()

    def failed_runs(self, train_dataset: str, test_set: str, fraction: float) -> pd.DataFrame:
        """The failed fits (:func:`failed_fits`) of one section: one row per entry and failed seed."""
        f = self.fits
        if f.empty:
            return f
        sel = (
            (f["train_dataset"] == train_dataset)
            & (f["test_set"] == test_set)
            & (f["fraction"] == fraction)
            & f["failed_fit"]
        )
        return f[sel]

    def rank_distribution(
        self, train_dataset: str, test_set: str, fraction: float, metric: str
    ) -> pd.DataFrame:
        """Bootstrap rank distribution of one family: entry × rank -> fraction of resamples."""
        r = self.ranks
        if r.empty:
            return r
        sel = (
            (r["train_dataset"] == train_dataset)
            & (r["test_set"] == test_set)
            & (r["fraction"] == fraction)
            & (r["metric"] == metric)
        )
        return r[sel].pivot(index="entry", columns="rank", values="share")


def _entry_order(wide: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(wide.columns, key=lambda e: (str(e[0]), str(e[1])))


@dataclass(frozen=True)
class StatsOptions:
    """How the leaderboard's statistics are made."""

    alpha: float = 0.05
    confidence: float = 0.95
    n_resamples: int = 9999
    seed: int = 0
    unit: str = "patient"
    rank_resamples: int = 1000


def _wide(units: pd.DataFrame, column: str) -> pd.DataFrame:
    wide = units.pivot(index="unit_id", columns=list(stats.ENTRY), values=column)
    wide.columns = [tuple(c) for c in wide.columns]
    return wide


def _entry_rows(
    fam: dict,
    group: pd.DataFrame,
    units: pd.DataFrame,
    entries: list[tuple[str, str]],
    direction: str | None,
    opts: StatsOptions,
) -> dict[tuple, dict]:
    """Descriptive statistics of every entry over its unit values (the values the tests use): n, NaN
    units, mean, sd, median, quartiles and the interval of the mean (:func:`statistics.mean_interval`:
    t-interval below :data:`statistics.SMALL_N` units, else bootstrap); scans and NaN scans beside."""
    rows: dict[tuple, dict] = {}
    for e in entries:
        own = group[(group["model"] == e[0]) & (group["pretrain"] == e[1])]["value"]
        u = units[(units["model"] == e[0]) & (units["pretrain"] == e[1])]["value"]
        lo, hi, method = stats.mean_interval(u.to_numpy(), opts.confidence, opts.n_resamples, opts.seed)
        rows[e] = {
            **fam,
            "model": e[0],
            "pretrain": e[1],
            "entry": stats.entry_label(*e),
            "direction": direction or "",
            **stats.describe(u),
            "n_scans": int(own.size),
            "n_scans_nan": int(own.isna().sum()),
            "n_units": int(u.notna().sum()),
            "ci_low": lo,
            "ci_high": hi,
            "ci_method": method,
        }
    return rows


def _untested(rows: dict[tuple, dict]) -> None:
    for r in rows.values():
        r.update(
            position=np.nan,
            is_best=False,
            mean_rank=math.nan,
            n_rank_cases=0,
            n_vs_best=0,
            W_vs_best=math.nan,
            p_vs_best=math.nan,
            p_holm_vs_best=math.nan,
            rbc_vs_best=math.nan,
            hl_vs_best=math.nan,
            hl_low_vs_best=math.nan,
            hl_high_vs_best=math.nan,
            cles_vs_best=math.nan,
            vs_best="",
            marker="",
        )


def _vs_best(r: dict, e: tuple, best: object | None, lookup: dict, direction: str, alpha: float) -> None:
    """Fill an entry's "vs best" columns from the all-pairs table (the same adjusted p)."""
    nan = math.nan
    if best is None or e == best:
        r.update(
            n_vs_best=int(r["n_units"]),
            W_vs_best=nan,
            p_vs_best=nan,
            p_holm_vs_best=nan,
            rbc_vs_best=nan,
            hl_vs_best=nan,
            hl_low_vs_best=nan,
            hl_high_vs_best=nan,
            cles_vs_best=nan,
            vs_best="best" if e == best else "tie",
            marker="",
        )
        return
    if (best, e) in lookup:  # stored as best - entry: flip to entry - best
        t, p_adj = lookup[(best, e)]
        hl, lo, hi, rbc, cles = -t.hl, -t.hl_high, -t.hl_low, -t.rbc, 1 - t.cles
    else:
        t, p_adj = lookup[(e, best)]
        hl, lo, hi, rbc, cles = t.hl, t.hl_low, t.hl_high, t.rbc, t.cles
    worse = (hl < 0 or (hl == 0 and rbc < 0)) if direction == "higher" else (hl > 0 or (hl == 0 and rbc > 0))
    verdict = "n.s." if not (p_adj < alpha) else ("worse" if worse else "better")
    r.update(
        n_vs_best=t.n,
        W_vs_best=t.W,
        p_vs_best=t.p,
        p_holm_vs_best=p_adj,
        rbc_vs_best=rbc,
        hl_vs_best=hl,
        hl_low_vs_best=lo,
        hl_high_vs_best=hi,
        cles_vs_best=cles,
        wilcoxon_method=t.method,
        vs_best=verdict,
        marker="†" if verdict == "worse" else "",
    )


def _family_row(fam: dict, group: pd.DataFrame, wide: pd.DataFrame, opts: StatsOptions) -> dict:
    """The family row before any test: unit, n and "descriptive only" defaults."""
    return {
        **fam,
        "unit": opts.unit,
        "n_units": int(wide.notna().any(axis=1).sum()),
        "n_scans": int(group["case_id"].nunique()),
        "n": 0,
        "k": wide.shape[1],
        "Q": math.nan,
        "p": math.nan,
        "W": math.nan,
        "reason": "no direction: descriptive only",
        "n_pairs": 0,
        "n_nonzero_max": 0,
        "p_holm_min_possible": math.nan,
        "reachable": False,
        "tau_median": math.nan,
        "tau_q05": math.nan,
        "stability": "",
        "first_by_mean": "",
        "first_by_mean_rank": "",
        "first_by_significance": "",
        "first_agrees": True,
    }


def _case_wide(group: pd.DataFrame, entries: list[tuple], unit: str) -> tuple[pd.DataFrame, pd.Series]:
    """Scan × entry table of the seed-averaged values, and the unit (patient or scan) of every scan."""
    wide = group.pivot(index="case_id", columns=list(stats.ENTRY), values="value")
    wide.columns = [tuple(c) for c in wide.columns]
    column = "patient_id" if unit == "patient" else "case_id"
    unit_of = group.groupby("case_id")[column].first().astype(str)
    return wide.loc[:, entries], unit_of


def _reach(family_row: dict, pairs: list[dict], alpha: float) -> None:
    """Smallest Holm p any pair of the family could reach, from the non-zero differences."""
    tested = [p for p in pairs if p["holm_family"] == "yes" and math.isfinite(p["p"])]
    if tested:
        floor = min(p["p_min"] for p in tested) * len(tested)
        family_row.update(
            n_pairs=len(tested),
            n_nonzero_max=max(int(p["n_nonzero"]) for p in tested),
            p_holm_min_possible=min(1.0, floor),
            reachable=bool(floor < alpha),
        )


def _stability(
    fam: dict, family_row: dict, units: pd.DataFrame, entries: list, direction: str, opts: StatsOptions, last
) -> list[dict]:
    """Ranking stability (bootstrap of the units) and its rank rows; not shown below SMALL_N units."""
    n = family_row["n_units"]
    if n < stats.SMALL_N:
        family_row["stability"] = (
            f"not shown: {n} {opts.unit}s, fewer than {stats.SMALL_N} (a bootstrap of so few units has "
            "too few distinct resamples to say anything)"
        )
        return []
    dist, taus = stats.rank_bootstrap(
        _wide(units, "value").loc[:, entries],
        _wide(units, "value").loc[:, entries].notna().astype(float),
        direction,
        opts.rank_resamples,
        opts.seed,
        last=last,
    )
    if not (taus.size and np.isfinite(taus).any()):  # tau is undefined when a ranking is all ties
        return []
    family_row.update(tau_median=float(np.nanmedian(taus)), tau_q05=float(np.nanquantile(taus, 0.05)))
    return [
        {**fam, "entry": stats.entry_label(*e), "rank": int(k), "share": float(dist.loc[[e]].iloc[0][k])}
        for e in entries
        for k in dist.columns
    ]


def _robustness(rows: dict, family_row: dict, lookup: dict, direction: str, alpha: float, failed) -> None:
    """Ranks under mean, mean rank and significance (:mod:`robustness`) and whether first place agrees."""
    ranks = robustness.rankings(
        {e: r["mean"] for e, r in rows.items()},
        {e: r["mean_rank"] for e, r in rows.items()},
        lookup,
        direction,
        alpha,
        failed,
    )
    for method, by_entry in ranks.items():
        for e, rank in by_entry.items():
            rows[e][f"rank_by_{method}"] = rank
    firsts = robustness.first_places(ranks)
    for method, es in firsts.items():
        family_row[f"first_by_{method}"] = " = ".join(stats.entry_label(*e) for e in es)
    family_row["first_agrees"] = robustness.first_agrees(firsts, bool(family_row["reachable"]))


def _family_tables(
    key: tuple,
    group: pd.DataFrame,
    units: pd.DataFrame,
    opts: StatsOptions,
    failed: frozenset = frozenset(),
) -> tuple[list[dict], list[dict], dict, list[dict]]:
    """Summary rows, pairwise rows, the family row and the rank distribution rows of one family.

    Every number comes from the unit values (patient means with unit ``patient``): mean, spread,
    interval, best, ranks, rank bootstrap and tests. ``failed``: the entries with a failed fit
    (:func:`failed_fits`) in this family's section: never best, no board position, ranked after every
    working entry (mean rank, rank bootstrap, robustness rankings), and left out of the Holm family.
    """
    fam = dict(zip(stats.FAMILY, key))
    direction = stats.metric_direction(fam["metric"])
    wide = _wide(units, "value")
    entries = _entry_order(wide)
    wide = wide.loc[:, entries]
    rows = _entry_rows(fam, group, units, entries, direction, opts)
    family_row = _family_row(fam, group, wide, opts)
    summary = pd.DataFrame.from_dict(rows, orient="index")
    if direction is None or summary["mean"].isna().all():
        _untested(rows)
        return list(rows.values()), [], family_row, []

    ordinary = summary.loc[[e for e in entries if e not in failed]]
    best = stats.best_entry(ordinary, direction) if ordinary["mean"].notna().any() else None
    sign = 1.0 if direction == "higher" else -1.0

    def board_key(e: tuple) -> tuple:
        mean = rows[e]["mean"]
        return (e in failed, e != best, math.inf if math.isnan(mean) else -sign * mean, entries.index(e))

    order = sorted(entries, key=board_key)
    ranks = stats.mean_ranks(wide, direction, last=list(failed))
    n_rank = len(stats.complete_cases(wide))
    case_wide, unit_of = _case_wide(group, entries, opts.unit)
    pairs, lookup = pair_table(fam, order, case_wide, unit_of, failed, opts.alpha, opts.confidence)
    for pos, e in enumerate(order, start=1):
        rows[e].update(
            position=math.nan if e in failed else pos,
            is_best=(e == best),
            mean_rank=float(ranks.get(e, math.nan)),
            n_rank_cases=n_rank,
        )
        _vs_best(rows[e], e, best, lookup, direction, opts.alpha)
        if e in failed:  # not in the Holm family: no verdict against the best
            rows[e].update(vs_best="failed fit", marker="")
    _reach(family_row, pairs, opts.alpha)
    family_row.update(stats.friedman(wide).to_dict())
    _robustness(rows, family_row, lookup, direction, opts.alpha, failed)
    rank_rows = _stability(fam, family_row, units, entries, direction, opts, list(failed))
    return [rows[e] for e in order], pairs, family_row, rank_rows


SUMMARY_COLUMNS = [
    *stats.FAMILY,
    "position",
    "model",
    "pretrain",
    "entry",
    "direction",
    "n",
    "n_nan",
    "n_units",
    "n_scans",
    "n_scans_nan",
    "mean",
    "std",
    "median",
    "q1",
    "q3",
    "ci_low",
    "ci_high",
    "ci_method",
    "seed_sd",
    "seed_min",
    "seed_max",
    "seeds_min",
    "seeds_max",
    "failure_rate",
    "both_empty_rate",
    "fit_seeds",
    "failed_seeds",
    "failed_fit",
    "mean_rank",
    "n_rank_cases",
    "rank_by_mean",
    "rank_by_mean_rank",
    "rank_by_significance",
    "is_best",
    "n_vs_best",
    "W_vs_best",
    "p_vs_best",
    "p_holm_vs_best",
    "hl_vs_best",
    "hl_low_vs_best",
    "hl_high_vs_best",
    "cles_vs_best",
    "rbc_vs_best",
    "wilcoxon_method",
    "vs_best",
    "marker",
]
PAIRWISE_COLUMNS = [
    *stats.FAMILY,
    "model_a",
    "pretrain_a",
    "entry_a",
    "model_b",
    "pretrain_b",
    "entry_b",
    "n",
    "n_nonzero",
    "mean_diff",
    "hl",
    "hl_low",
    "hl_high",
    "cles",
    "rbc",
    "W",
    "p",
    "p_holm",
    "holm_family",
    "method",
    "p_min",
    "significant",
]
FRIEDMAN_COLUMNS = [
    *stats.FAMILY,
    "unit",
    "n_units",
    "n_scans",
    "n",
    "k",
    "Q",
    "p",
    "W",
    "reason",
    "n_pairs",
    "n_nonzero_max",
    "p_holm_min_possible",
    "reachable",
    "tau_median",
    "tau_q05",
    "stability",
    "first_by_mean",
    "first_by_mean_rank",
    "first_by_significance",
    "first_agrees",
]
RANK_COLUMNS = [*stats.FAMILY, "entry", "rank", "share"]
FIT_COLUMNS = [*SECTION, *stats.ENTRY, "seed", "n_cases", "n_pred_empty", "n_ref_lesion", "failed_fit"]


def failed_fits(cases: pd.DataFrame) -> pd.DataFrame:
    """Which runs are *failed fits*: one row per (train dataset, test set, fraction, entry, seed).

    A **failed fit** is a run (one seed of an entry) whose prediction is empty on every test case of
    the test set while at least one reference of that test set is not empty: a collapsed model, e.g.
    a network stuck at predicting background. It is read from the per-case table alone, from the
    ``area_pred_mm2`` and ``area_ref_mm2`` rows that the engine writes for every case
    (:func:`bench3d2d.evaluation.metrics.case_metrics`): a prediction is empty when its area is 0, a
    reference has a lesion when its area is > 0. A NaN area is not known to be empty (nor a lesion),
    so a run is never called failed on missing numbers; a table without area rows has no rows here.
    Rows of the same case and seed written twice (two runs) are averaged first, as everywhere.

    Columns: :data:`FIT_COLUMNS` (``n_cases`` cases with an area row, ``n_pred_empty`` of them with an
    empty prediction, ``n_ref_lesion`` with a non-empty reference, ``failed_fit`` the verdict).
    """
    keys = [*SECTION, *stats.ENTRY, "seed"]
    areas = cases[cases["metric"].isin(["area_pred_mm2", "area_ref_mm2"])]
    if areas.empty:
        return pd.DataFrame(columns=FIT_COLUMNS).astype({"failed_fit": bool})
    wide = areas.pivot_table(index=[*keys, "case_id"], columns="metric", values="value", aggfunc="mean")
    if not {"area_pred_mm2", "area_ref_mm2"} <= set(wide.columns):
        return pd.DataFrame(columns=FIT_COLUMNS).astype({"failed_fit": bool})
    wide = wide.dropna(subset=["area_pred_mm2", "area_ref_mm2"], how="all")
    flags = pd.DataFrame(
        {
            "n_cases": 1,
            "n_pred_empty": (wide["area_pred_mm2"] == 0).astype(int),
            "n_ref_lesion": (wide["area_ref_mm2"] > 0).astype(int),
        },
        index=wide.index,
    )
    per_run = flags.groupby(level=keys).sum()
    # every case of the test set has an empty prediction, and some case has a lesion
    per_run["failed_fit"] = (per_run["n_pred_empty"] == per_run["n_cases"]) & (per_run["n_ref_lesion"] > 0)
    return per_run.reset_index().reindex(columns=FIT_COLUMNS)


def _fit_counts(fits: pd.DataFrame) -> pd.DataFrame:
    """Per (section, entry): seeds judged (``fit_seeds``), failed fits among them, and whether any."""
    keys = [*SECTION, *stats.ENTRY]
    if fits.empty:
        return pd.DataFrame(columns=[*keys, "fit_seeds", "failed_seeds"])
    g = fits.groupby(keys)["failed_fit"]
    return pd.DataFrame({"fit_seeds": g.size(), "failed_seeds": g.sum()}).reset_index()


def failure_rates(cases: pd.DataFrame) -> pd.DataFrame:
    """Per (train dataset, test set, fraction, entry): the share of (case, seed) results that are
    failures (empty prediction, non-empty reference) and that have both masks empty (HD95 undefined).
    NaN when the table has no ``area_pred_mm2`` / ``area_ref_mm2`` rows."""
    keys = [*SECTION, *stats.ENTRY]
    areas = cases[cases["metric"].isin(["area_pred_mm2", "area_ref_mm2"])]
    if areas.empty:
        return pd.DataFrame(columns=[*keys, "failure_rate", "both_empty_rate"])
    wide = areas.pivot_table(
        index=[*keys, "case_id", "seed"], columns="metric", values="value", aggfunc="mean"
    )
    if not {"area_pred_mm2", "area_ref_mm2"} <= set(wide.columns):
        return pd.DataFrame(columns=[*keys, "failure_rate", "both_empty_rate"])
    pred, ref = wide["area_pred_mm2"], wide["area_ref_mm2"]
    flags = pd.DataFrame(
        {
            "failure_rate": ((pred == 0) & (ref > 0)).astype(float),
            "both_empty_rate": ((pred == 0) & (ref == 0)).astype(float),
        }
    )
    return flags.groupby(level=keys).mean().reset_index()


def build_leaderboard(
    cases: pd.DataFrame,
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    unit: str = "patient",
    rank_resamples: int = 1000,
) -> Leaderboard:
    """All leaderboard tables of a long per-case table (columns :data:`bench3d2d.results.CASE_COLUMNS`).

    ``unit="patient"`` needs every row's ``patient_id``; when some are missing (results written before
    the column existed) the unit falls back to ``case`` with a warning in ``Leaderboard.warnings``.
    """
    if unit not in stats.UNITS:
        raise ValueError(f"unit must be one of {', '.join(stats.UNITS)}, not {unit!r}")
    notes: list[str] = []
    if unit == "patient" and not cases.empty and not stats.patients_known(cases):
        notes.append(
            "the per-case table does not name every case's patient (results written before the "
            "patient_id column existed?): tests and intervals use the scan as the unit, which is "
            "too optimistic when a patient has several scans; rerun the runs to get patient ids"
        )
        unit = "case"
    opts = StatsOptions(alpha, confidence, n_resamples, seed, unit, rank_resamples)
    means = stats.average_seeds(cases)
    units = stats.unit_values(means, unit)
    out: dict[str, list[dict]] = {"summary": [], "pairs": [], "family": [], "ranks": []}
    unit_groups = dict(list(units.groupby(list(stats.FAMILY), sort=True)))
    fits = failed_fits(cases)
    failed: dict[tuple, set] = {}
    for r in fits[fits["failed_fit"]].itertuples(index=False):
        failed.setdefault((r.train_dataset, r.test_set, r.fraction), set()).add((r.model, r.pretrain))
    for key, group in means.groupby(list(stats.FAMILY), sort=True):
        s, p, f, r = _family_tables(key, group, unit_groups[key], opts, frozenset(failed.get(key[:3], ())))
        out["summary"] += s
        out["pairs"] += p
        out["family"].append(f)
        out["ranks"] += r
    summary = pd.DataFrame(out["summary"])
    if not summary.empty:
        summary = summary.merge(stats.seed_spread(cases), on=[*stats.FAMILY, *stats.ENTRY], how="left")
        summary = summary.merge(failure_rates(cases), on=[*SECTION, *stats.ENTRY], how="left")
        summary = summary.merge(_fit_counts(fits), on=[*SECTION, *stats.ENTRY], how="left")
        seeds = means.groupby([*stats.FAMILY, *stats.ENTRY])["n_seeds"].agg(seeds_min="min", seeds_max="max")
        summary = summary.merge(seeds.reset_index(), on=[*stats.FAMILY, *stats.ENTRY], how="left")
    summary = summary.reindex(columns=SUMMARY_COLUMNS)
    summary["is_best"] = summary["is_best"].fillna(False).astype(bool)
    for col in ("fit_seeds", "failed_seeds"):
        summary[col] = summary[col].fillna(0).astype(int)
    summary["failed_fit"] = summary["failed_seeds"] > 0
    for col in ("marker", "vs_best", "wilcoxon_method"):
        summary[col] = summary[col].astype(object).fillna("")
    return Leaderboard(
        cases=cases,
        case_means=means,
        summary=summary,
        pairwise=pd.DataFrame(out["pairs"]).reindex(columns=PAIRWISE_COLUMNS),
        friedman=pd.DataFrame(out["family"]).reindex(columns=FRIEDMAN_COLUMNS),
        settings=_settings(opts),
        units=units,
        ranks=pd.DataFrame(out["ranks"]).reindex(columns=RANK_COLUMNS),
        fits=fits,
        warnings=notes,
    )


def _settings(opts: StatsOptions) -> dict[str, Any]:
    return {
        "alpha": opts.alpha,
        "confidence": opts.confidence,
        "bootstrap_resamples": opts.n_resamples,
        "bootstrap_seed": opts.seed,
        "unit": opts.unit,
        "rank_resamples": opts.rank_resamples,
        "small_n": stats.SMALL_N,
        "tie_decimals": stats.TIE_DECIMALS,
        "bootstrap_method": f"with {stats.SMALL_N} or more {opts.unit}s: bootstrap of the mean of the "
        f"{opts.unit} values (BCa, or percentile where BCa fails); below {stats.SMALL_N}: Student-t "
        f"interval of the mean of the {opts.unit} values",
        "test": "paired Wilcoxon signed-rank, two-sided, on the scans both entries have a value for "
        f"(averaged per {opts.unit}); differences rounded to {stats.TIE_DECIMALS} decimals, zero "
        "differences discarded before ranking ('wilcox'), mid-ranks for ties; exact permutation p-value "
        f"up to {stats.EXACT_MAX} non-zero differences, else normal approximation with tie correction, "
        "no continuity correction; all differences zero: p = 1",
        "effect_size": "Hodges-Lehmann shift (median of Walsh averages) with its distribution-free "
        f"{opts.confidence * 100:g} % interval, unadjusted (not corrected for the other pairs, unlike the "
        "† marks); paired CLES P(A > B) + P(A = B) / 2",
        "correction": "one family rule: all pairs of distinct, working entries within each (train dataset, "
        "test set, fraction, metric), Holm-adjusted together; pairs with a failed fit, or with an entry "
        "bit-identical to an earlier one (its twin, whose p-values it carries), are left out of the family "
        "(pairwise.csv, column holm_family, says why); the † marks, the pairwise table and the "
        "critical-difference diagrams use the same adjusted p-values",
        "scipy": stats.SCIPY_VERSION,
        "metric_direction": dict(stats.METRIC_DIRECTION),
    }
