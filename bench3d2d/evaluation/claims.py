"""The paper's claims as data, and their check on a board's own results (``docs/leaderboards.md``).

A claim is a row of :data:`PAPER_CLAIMS`; a board for other data can carry other claims (pass them to
:func:`check_claims`). Three kinds:

* ``beats_best_baseline``: ``model`` with ``pretrain`` ("ssl": every self-supervised variant present,
  one row each) beats the best other model (best mean, chosen on the board's data) at ``fraction``,
  in every section (train dataset, test set) that has both;
* ``pretraining_helps``: for each of ``models``, every SSL variant beats the same model from scratch;
* ``gain_smaller``: the gain of ``model``/``pretrain`` over the best baseline, on each train dataset's
  own test set, is smaller on train datasets matching ``smaller`` than on those matching ``larger``.

Each claim is tested on its own (not corrected across claims) at the board's alpha and unit: paired
Wilcoxon signed-rank (exact, :func:`bench3d2d.evaluation.statistics.paired_test`) over units for the
first two kinds; Mann-Whitney U (SciPy, two-sided) between the per-unit gains of the two datasets for
the third. Verdict: ``holds`` (claimed direction and p < alpha), ``does not hold`` (the difference
goes the other way), ``not significant at this n`` (claimed direction, p >= alpha), or ``not testable
here`` (the entries are missing).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from bench3d2d.evaluation import statistics as stats

HOLDS, FAILS, NOT_SIGNIFICANT, NOT_TESTABLE = (
    "holds",
    "does not hold",
    "not significant at this n",
    "not testable here",
)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, in a form a board can test."""

    id: str
    text: str
    kind: str  # "beats_best_baseline", "pretraining_helps" or "gain_smaller"
    model: str = ""
    pretrain: str = "none"  # "none", a pre-training name, or "ssl" (every non-"none" variant)
    models: tuple[str, ...] = ()
    fraction: float | None = 5.0  # None: every fraction present
    metric: str = "dice"
    paper: str = ""  # what the paper reports
    smaller: str = ""  # regex of train datasets with the smaller gain
    larger: str = ""


#: Morano et al., MICCAI 2023: the claims every board checks.
PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fpbnet-ssl-beats-baselines",
        "FPB net with SSL beats the best baseline at 5 % of the labels",
        "beats_best_baseline",
        model="fpbnet",
        pretrain="ssl",
        paper="+23 % Dice",
    ),
    Claim(
        "fpbnet-scratch-beats-baselines",
        "FPB net from scratch beats the best baseline at 5 % of the labels",
        "beats_best_baseline",
        model="fpbnet",
        pretrain="none",
        paper="+8 % Dice",
    ),
    Claim(
        "ssl-helps",
        "SSL pre-training helps FPB net and Lachinov et al. at 5 % of the labels",
        "pretraining_helps",
        models=("fpbnet", "lachinov"),
        pretrain="ssl",
        paper="higher Dice with SSL",
    ),
    Claim(
        "rpd-gain-smaller",
        "FPB net's gain (SSL) over the best baseline is smaller on RPD than on GA",
        "gain_smaller",
        model="fpbnet",
        pretrain="ssl",
        fraction=None,
        smaller=r"rpd",
        larger=r"(^|[-_])ga([-_]|$)",
        paper="smaller gain on RPD",
    ),
)


def _verdict(diff: float, p: float, alpha: float, higher: bool) -> str:
    if not math.isfinite(diff) or not math.isfinite(p):
        return NOT_TESTABLE
    right = diff > 0 if higher else diff < 0
    if not right:
        return FAILS
    return HOLDS if p < alpha else NOT_SIGNIFICANT


def _pretrains(values: pd.DataFrame, model: str, pretrain: str) -> list[str]:
    present = sorted(set(values.loc[values["model"] == model, "pretrain"]))
    if pretrain == "ssl":
        return [p for p in present if p != "none"]
    return [pretrain] if pretrain in present else []


def _entry_series(units: pd.DataFrame, e: tuple[str, str]) -> pd.Series:
    u = units[(units["model"] == e[0]) & (units["pretrain"] == e[1])]
    return pd.Series(u["value"].to_numpy(dtype=float), index=u["unit_id"])


def _means(cases: pd.DataFrame) -> pd.Series:
    return cases.groupby(["model", "pretrain"])["value"].mean()


def _sections(cases: pd.DataFrame, claim: Claim) -> list[tuple]:
    sel = cases[cases["metric"] == claim.metric]
    if claim.fraction is not None:
        sel = sel[np.isclose(sel["fraction"].astype(float), float(claim.fraction))]
    return sorted({tuple(r) for r in sel[["train_dataset", "test_set", "fraction"]].itertuples(index=False)})


def _row(claim: Claim, section: tuple, **fields) -> dict:
    train, test, fraction = section
    return {
        "claim": claim.id,
        "text": claim.text,
        "paper": claim.paper,
        "train_dataset": train,
        "test_set": test,
        "fraction": fraction,
        **fields,
    }


def _compare(
    claim: Claim,
    section: tuple,
    a: tuple,
    b: tuple,
    cases: pd.DataFrame,
    units: pd.DataFrame,
    alpha: float,
    unit: str,
) -> dict:
    """``a`` against ``b`` in one section: relative gain of the means, paired test over units."""
    higher = stats.metric_direction(claim.metric) != "lower"
    means = _means(cases)
    t = stats.paired_test(_entry_series(units, a), _entry_series(units, b), 1 - alpha)
    ma, mb = float(means[a]), float(means[b])
    rel = (ma - mb) / abs(mb) * 100 if mb else math.nan
    label = stats.metric_label(claim.metric)
    numbers = (
        f"{label} {stats.entry_label(*a)} {ma:.3f} vs {stats.entry_label(*b)} {mb:.3f}: "
        f"{rel:+.1f} %" + (f" (paper: {claim.paper})" if claim.paper else "")
    )
    interval = (
        f"[{t.hl_low:+.3f}, {t.hl_high:+.3f}]" if math.isfinite(t.hl_low) else "(no interval at this n)"
    )
    test = f"paired Wilcoxon over {t.n} {unit}s: HL {t.hl:+.3f} {interval}, p = {t.p:.3g} ({t.method})"
    verdict = _verdict(t.mean_diff if t.n else math.nan, t.p, alpha, higher)
    if verdict == NOT_SIGNIFICANT and t.p_min >= alpha:
        test += f"; no test can reach p < {alpha:g} with {t.n} {unit}s (smallest possible p {t.p_min:.3g})"
    return _row(
        claim,
        section,
        subject=stats.entry_label(*a),
        comparator=stats.entry_label(*b),
        gain_percent=rel,
        n_units=t.n,
        p=t.p,
        numbers=numbers,
        test=test,
        verdict=verdict,
    )


def _untestable(claim: Claim, section: tuple, why: str) -> dict:
    return _row(
        claim,
        section,
        subject="",
        comparator="",
        gain_percent=math.nan,
        n_units=0,
        p=math.nan,
        numbers=why,
        test="",
        verdict=NOT_TESTABLE,
    )


def _best_baseline(cases: pd.DataFrame, model: str, higher: bool) -> tuple[str, str] | None:
    means = _means(cases[cases["model"] != model]).dropna()
    if means.empty:
        return None
    return means.idxmax() if higher else means.idxmin()


def _in_section(df: pd.DataFrame, section: tuple, metric: str) -> pd.DataFrame:
    train, test, fraction = section
    return df[
        (df["train_dataset"] == train)
        & (df["test_set"] == test)
        & (df["fraction"] == fraction)
        & (df["metric"] == metric)
    ]


def _beats(claim: Claim, cases: pd.DataFrame, units: pd.DataFrame, alpha: float, unit: str) -> list[dict]:
    higher = stats.metric_direction(claim.metric) != "lower"
    rows = []
    for section in _sections(cases, claim):
        c, u = _in_section(cases, section, claim.metric), _in_section(units, section, claim.metric)
        variants = _pretrains(c, claim.model, claim.pretrain)
        base = _best_baseline(c, claim.model, higher)
        if not variants or base is None:
            rows.append(_untestable(claim, section, f"no {claim.model} ({claim.pretrain}) or no baseline"))
            continue
        rows += [_compare(claim, section, (claim.model, v), base, c, u, alpha, unit) for v in variants]
    return rows


def _helps(claim: Claim, cases: pd.DataFrame, units: pd.DataFrame, alpha: float, unit: str) -> list[dict]:
    rows = []
    for section in _sections(cases, claim):
        c, u = _in_section(cases, section, claim.metric), _in_section(units, section, claim.metric)
        for model in claim.models:
            variants = _pretrains(c, model, claim.pretrain)
            if not variants or not ((c["model"] == model) & (c["pretrain"] == "none")).any():
                rows.append(_untestable(claim, section, f"{model}: needs scratch and SSL runs"))
                continue
            rows += [
                _compare(claim, section, (model, v), (model, "none"), c, u, alpha, unit) for v in variants
            ]
    return rows


def _gains(claim: Claim, cases: pd.DataFrame, units: pd.DataFrame, pattern: str) -> dict[tuple, np.ndarray]:
    """Per own-test-set section of train datasets matching ``pattern``: per-unit gains over the best
    baseline, keyed by (train dataset, fraction, variant)."""
    higher = stats.metric_direction(claim.metric) != "lower"
    out = {}
    for section in _sections(cases, claim):
        train, test, fraction = section
        if test != train or not re.search(pattern, train, flags=re.IGNORECASE):
            continue
        c, u = _in_section(cases, section, claim.metric), _in_section(units, section, claim.metric)
        base = _best_baseline(c, claim.model, higher)
        if base is None:
            continue
        for v in _pretrains(c, claim.model, claim.pretrain):
            both = pd.concat(
                {"a": _entry_series(u, (claim.model, v)), "b": _entry_series(u, base)}, axis=1
            ).dropna()
            out[(train, fraction, v)] = (both["a"] - both["b"]).to_numpy() * (1 if higher else -1)
    return out


def _smaller(claim: Claim, cases: pd.DataFrame, units: pd.DataFrame, alpha: float, unit: str) -> list[dict]:
    small, large = _gains(claim, cases, units, claim.smaller), _gains(claim, cases, units, claim.larger)
    rows = []
    for (s_train, fraction, v), ds in small.items():
        for (l_train, l_fraction, lv), dl in large.items():
            if l_fraction != fraction or lv != v or ds.size == 0 or dl.size == 0:
                continue
            res = scipy.stats.mannwhitneyu(dl, ds, alternative="two-sided")
            diff = float(dl.mean() - ds.mean())
            numbers = (
                f"gain of {stats.entry_label(claim.model, v)} over the best baseline, "
                f"{stats.metric_label(claim.metric)}: {s_train} {ds.mean():+.3f} ({ds.size} {unit}s) "
                f"vs {l_train} {dl.mean():+.3f} ({dl.size} {unit}s)"
            )
            test = f"Mann-Whitney U over per-{unit} gains: U = {res.statistic:g}, p = {res.pvalue:.3g}"
            rows.append(
                _row(
                    claim,
                    (f"{s_train} vs {l_train}", "own test sets", fraction),
                    subject=s_train,
                    comparator=l_train,
                    gain_percent=math.nan,
                    n_units=int(ds.size + dl.size),
                    p=float(res.pvalue),
                    numbers=numbers,
                    test=test,
                    verdict=_verdict(diff, float(res.pvalue), alpha, True),
                )
            )
    if not rows:
        rows.append(
            _untestable(
                claim,
                ("–", "–", math.nan),
                "needs the claim's model on train datasets of both kinds at one fraction",
            )
        )
    return rows


_KINDS = {"beats_best_baseline": _beats, "pretraining_helps": _helps, "gain_smaller": _smaller}
CLAIM_COLUMNS = [
    "claim",
    "text",
    "paper",
    "train_dataset",
    "test_set",
    "fraction",
    "subject",
    "comparator",
    "gain_percent",
    "n_units",
    "p",
    "numbers",
    "test",
    "verdict",
]


def check_claims(
    case_means: pd.DataFrame,
    units: pd.DataFrame,
    claims: tuple[Claim, ...] = PAPER_CLAIMS,
    alpha: float = 0.05,
    unit: str = "patient",
) -> pd.DataFrame:
    """Test every claim on a board's seed-averaged cases (:func:`statistics.average_seeds`) and unit
    values (:func:`statistics.unit_values`): one row per claim and section (:data:`CLAIM_COLUMNS`)."""
    rows: list[dict] = []
    unit = "scan" if unit == "case" else unit  # how the unit is named in the text
    for claim in claims:
        if claim.kind not in _KINDS:
            raise ValueError(
                f"claim {claim.id}: unknown kind {claim.kind!r}; choose from {', '.join(_KINDS)}"
            )
        found = _KINDS[claim.kind](claim, case_means, units, alpha, unit)
        rows += found or [
            _untestable(
                claim,
                ("–", "–", claim.fraction if claim.fraction else math.nan),
                f"no results at {claim.fraction:g} % of the labels" if claim.fraction else "no results",
            )
        ]
    return pd.DataFrame(rows).reindex(columns=CLAIM_COLUMNS)


def claim_summary(checked: pd.DataFrame) -> list[tuple[str, str]]:
    """Per claim, in order: (claim text, ``holds in 2 of 6 comparisons; not significant at this n in 4``)."""
    out = []
    for _, rows in checked.groupby("claim", sort=False):
        counts = rows["verdict"].value_counts()
        n = len(rows)
        parts = [
            f"{v} in {int(counts[v])} of {n}"
            for v in (HOLDS, NOT_SIGNIFICANT, FAILS, NOT_TESTABLE)
            if v in counts
        ]
        out.append((str(rows["text"].iloc[0]), "; ".join(parts)))
    return out
