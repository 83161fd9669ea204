"""The paper's claims as data, and their check on a board's own results (``docs/leaderboards.md``).

A claim is a row of :data:`PAPER_CLAIMS`; a board for other data can carry other claims (pass them to
:func:`check_claims`). Three kinds, each with its comparator fixed in advance (never chosen by
looking at the results):

* ``beats_best_baseline``: ``model`` with ``pretrain`` ("ssl": every self-supervised variant present,
  one row each) against **every baseline**: each entry (any pre-training) of every other model, each
  tested, at ``fraction``, in every section (train dataset, test set) that has both. Beating the best
  baseline means beating each of them, so no baseline has to be picked from the test results;
* ``pretraining_helps``: for each of ``models``, every SSL variant against the same model from scratch;
* ``gain_smaller``: the per-unit gain of ``model``/``pretrain`` over each baseline entry, on each train
  dataset's own test set, is smaller on train datasets matching ``smaller`` than on those matching
  ``larger`` (the same baseline on both sides, at the same fraction).

Tests, over the board's unit (patient means by default, the values of every other table): paired
Wilcoxon signed-rank (exact, :func:`bench3d2d.evaluation.statistics.paired_test`) for the first two
kinds; Mann-Whitney U (SciPy, two-sided) between the per-unit gains of the two datasets for the third.
The p-values of **all the comparisons of one claim** are Holm-adjusted together (claims are not
corrected across each other). Verdicts:

* ``holds``: Holm-adjusted p < alpha with the effect in the claimed direction;
* ``contradicted``: Holm-adjusted p < alpha with the effect in the opposite direction;
* ``inconclusive``: anything else, with the reason: too few non-zero differences for any test to reach
  alpha, or not significant after Holm;
* ``not testable here``: an entry is missing, or one of the entries compared is a failed fit in that
  section (a verdict would be about a collapsed model, not about the method).

The direction of a paired comparison is the sign of its Hodges-Lehmann shift (of the rank-biserial
correlation when the shift is 0); of a gain comparison, the sign of the difference of the mean gains.
A claim about a method needs at least :data:`MIN_SEEDS` seeds per entry; with fewer, every row says
that its verdict is about the trained models at hand, not about the method.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from bench3d2d.evaluation import statistics as stats

HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE = (
    "holds",
    "contradicted",
    "inconclusive",
    "not testable here",
)
VERDICTS: tuple[str, ...] = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
#: Seeds per entry a method-level claim needs (fewer: the verdict is about these trained models).
MIN_SEEDS = 3


def claims_intro(alpha: float, unit: str) -> str:
    """The sentence every board puts above its claims check (what the code below does)."""
    return (
        f"The paper's claims (Morano et al., MICCAI 2023), tested on this board's data over {unit}s at "
        f"α = {alpha:g}, the comparisons of each claim Holm-adjusted together. The comparator is fixed in "
        "advance: every baseline entry, each tested (a claim about the best baseline holds only against "
        "each). Verdicts: holds (significant in the claimed direction) / contradicted (significant in the "
        "opposite direction) / inconclusive (n too small for any test to reach α, or not significant) / "
        f"not testable here (an entry is missing or is a failed fit). With fewer than {MIN_SEEDS} seeds "
        "a verdict is about the trained models, not the method."
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


@dataclass(frozen=True)
class _Board:
    """What every comparison reads: unit values, failed fits, seeds per entry, alpha, unit name."""

    units: pd.DataFrame  # statistics.unit_values of the board
    failed: frozenset  # (train dataset, test set, fraction, model, pretrain) of every failed fit
    seeds: dict  # (train dataset, test set, fraction, model, pretrain) -> seeds (fewest over cases)
    alpha: float
    unit: str


def _pretrains(values: pd.DataFrame, model: str, pretrain: str) -> list[str]:
    present = sorted(set(values.loc[values["model"] == model, "pretrain"]))
    if pretrain == "ssl":
        return [p for p in present if p != "none"]
    return [pretrain] if pretrain in present else []


def _entry_series(units: pd.DataFrame, e: tuple[str, str]) -> pd.Series:
    u = units[(units["model"] == e[0]) & (units["pretrain"] == e[1])]
    return pd.Series(u["value"].to_numpy(dtype=float), index=u["unit_id"])


def _sections(units: pd.DataFrame, claim: Claim) -> list[tuple]:
    sel = units[units["metric"] == claim.metric]
    if claim.fraction is not None:
        sel = sel[np.isclose(sel["fraction"].astype(float), float(claim.fraction))]
    return sorted({tuple(r) for r in sel[["train_dataset", "test_set", "fraction"]].itertuples(index=False)})


def _in_section(df: pd.DataFrame, section: tuple, metric: str) -> pd.DataFrame:
    train, test, fraction = section
    return df[
        (df["train_dataset"] == train)
        & (df["test_set"] == test)
        & (df["fraction"] == fraction)
        & (df["metric"] == metric)
    ]


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


def _untestable(claim: Claim, section: tuple, why: str, subject: str = "", comparator: str = "") -> dict:
    return _row(
        claim,
        section,
        subject=subject,
        comparator=comparator,
        gain_percent=math.nan,
        n_units=0,
        p=math.nan,
        numbers="",
        test="",
        why=why,
        seeds=0,
        _sign=0,
        _p_min=math.nan,
        _n_nonzero=0,
    )


def _failed_in(board: _Board, section: tuple, entries: list[tuple]) -> list[str]:
    """Labels of the entries that are failed fits in a section."""
    return [stats.entry_label(*e) for e in entries if (*section, *e) in board.failed]


def _seeds(board: _Board, section: tuple, entries: list[tuple]) -> int:
    return min((int(board.seeds.get((*section, *e), 0)) for e in entries), default=0)


def _compare(claim: Claim, section: tuple, a: tuple, b: tuple, board: _Board) -> dict:
    """``a`` against ``b`` in one section: relative gain of the unit means, paired test over units."""
    failed = _failed_in(board, section, [a, b])
    if failed:
        why = f"{' and '.join(failed)}: failed fit (predicted nothing on every test scan)"
        return _untestable(claim, section, why, stats.entry_label(*a), stats.entry_label(*b))
    higher = stats.metric_direction(claim.metric) != "lower"
    u = _in_section(board.units, section, claim.metric)
    xa, xb = _entry_series(u, a), _entry_series(u, b)
    t = stats.paired_test(xa, xb, 1 - board.alpha)
    ma, mb = float(xa.mean()), float(xb.mean())
    rel = (ma - mb) / abs(mb) * 100 if mb else math.nan
    numbers = (
        f"{stats.metric_label(claim.metric)} (mean of {board.unit} means) {stats.entry_label(*a)} {ma:.3f} "
        f"vs {stats.entry_label(*b)} {mb:.3f}: {rel:+.1f} %"
        + (f" (paper: {claim.paper})" if claim.paper else "")
    )
    interval = (
        f"[{t.hl_low:+.3f}, {t.hl_high:+.3f}] (unadjusted)"
        if math.isfinite(t.hl_low)
        else "(no interval at this n)"
    )
    test = f"paired Wilcoxon over {t.n} {board.unit}s: HL {t.hl:+.3f} {interval}, p = {t.p:.3g} ({t.method})"
    up = t.hl > 0 or (t.hl == 0 and t.rbc > 0)
    down = t.hl < 0 or (t.hl == 0 and t.rbc < 0)
    sign = 0 if not (up or down) else (1 if up == higher else -1)
    return _row(
        claim,
        section,
        subject=stats.entry_label(*a),
        comparator=stats.entry_label(*b),
        gain_percent=rel,
        n_units=t.n,
        p=t.p if t.n else math.nan,
        numbers=numbers,
        test=test,
        why="",
        seeds=_seeds(board, section, [a, b]),
        _sign=sign,
        _p_min=t.p_min,
        _n_nonzero=t.n_nonzero,
    )


def _baselines(u: pd.DataFrame, model: str) -> list[tuple[str, str]]:
    """Every entry of every other model in a section: the comparators of a "beats" claim."""
    other = u[u["model"] != model]
    return sorted({(str(m), str(p)) for m, p in zip(other["model"], other["pretrain"])})


def _beats(claim: Claim, board: _Board) -> list[dict]:
    rows = []
    for section in _sections(board.units, claim):
        u = _in_section(board.units, section, claim.metric)
        variants, bases = _pretrains(u, claim.model, claim.pretrain), _baselines(u, claim.model)
        if not variants or not bases:
            rows.append(_untestable(claim, section, f"no {claim.model} ({claim.pretrain}) or no baseline"))
            continue
        rows += [_compare(claim, section, (claim.model, v), base, board) for v in variants for base in bases]
    return rows


def _helps(claim: Claim, board: _Board) -> list[dict]:
    rows = []
    for section in _sections(board.units, claim):
        u = _in_section(board.units, section, claim.metric)
        for model in claim.models:
            variants = _pretrains(u, model, claim.pretrain)
            if not variants or not ((u["model"] == model) & (u["pretrain"] == "none")).any():
                rows.append(_untestable(claim, section, f"{model}: needs scratch and SSL runs"))
                continue
            rows += [_compare(claim, section, (model, v), (model, "none"), board) for v in variants]
    return rows


def _gains(claim: Claim, board: _Board, pattern: str) -> dict[tuple, tuple[np.ndarray, list[str], tuple]]:
    """Per own-test-set section of train datasets matching ``pattern``, variant and baseline entry:
    (per-unit gains in the better direction, failed entries among the two, section), keyed by
    (train dataset, fraction, variant, baseline)."""
    higher = stats.metric_direction(claim.metric) != "lower"
    out = {}
    for section in _sections(board.units, claim):
        train, test, fraction = section
        if test != train or not re.search(pattern, train, flags=re.IGNORECASE):
            continue
        u = _in_section(board.units, section, claim.metric)
        for v in _pretrains(u, claim.model, claim.pretrain):
            for base in _baselines(u, claim.model):
                both = pd.concat(
                    {"a": _entry_series(u, (claim.model, v)), "b": _entry_series(u, base)}, axis=1
                )
                d = stats.on_stored_precision((both["a"] - both["b"]).dropna().to_numpy()) * (
                    1 if higher else -1
                )
                failed = _failed_in(board, section, [(claim.model, v), base])
                out[(train, fraction, v, base)] = (d, failed, section)
    return out


def _gain_row(claim: Claim, board: _Board, small: tuple, large: tuple, v: str, base: tuple) -> dict:
    """One "smaller gain" comparison: Mann-Whitney U between the per-unit gains of two datasets."""
    (ds, failed_s, sec_s), (dl, failed_l, sec_l) = small, large
    where = (f"{sec_s[0]} vs {sec_l[0]}", "own test sets", sec_s[2])
    subject, comparator = stats.entry_label(claim.model, v), stats.entry_label(*base)
    failed = sorted(set(failed_s + failed_l))
    if failed:
        why = f"{' and '.join(failed)}: failed fit on {sec_s[0] if failed_s else sec_l[0]}"
        return _untestable(claim, where, why, subject, comparator)
    res = scipy.stats.mannwhitneyu(dl, ds, alternative="two-sided")
    diff = float(dl.mean() - ds.mean())
    numbers = (
        f"gain of {subject} over {comparator}, {stats.metric_label(claim.metric)}: {sec_s[0]} "
        f"{ds.mean():+.3f} ({ds.size} {board.unit}s) vs {sec_l[0]} {dl.mean():+.3f} ({dl.size} {board.unit}s)"
    )
    entries = [(claim.model, v), base]
    return _row(
        claim,
        where,
        subject=subject,
        comparator=comparator,
        gain_percent=math.nan,
        n_units=int(ds.size + dl.size),
        p=float(res.pvalue),
        numbers=numbers,
        test=f"Mann-Whitney U over per-{board.unit} gains: U = {res.statistic:g}, p = {res.pvalue:.3g}",
        why="",
        seeds=min(_seeds(board, sec_s, entries), _seeds(board, sec_l, entries)),
        _sign=int(np.sign(diff)),
        _p_min=math.nan,
        _n_nonzero=int(ds.size + dl.size),
    )


def _smaller(claim: Claim, board: _Board) -> list[dict]:
    small, large = _gains(claim, board, claim.smaller), _gains(claim, board, claim.larger)
    rows = []
    for (_, fraction, v, base), s in small.items():
        for (_, l_fraction, lv, l_base), lg in large.items():
            if l_fraction != fraction or lv != v or l_base != base or s[0].size == 0 or lg[0].size == 0:
                continue
            rows.append(_gain_row(claim, board, s, lg, v, base))
    if not rows:
        rows.append(
            _untestable(
                claim,
                ("–", "–", math.nan),
                "needs the claim's model and a baseline on train datasets of both kinds at one fraction",
            )
        )
    return rows


def _decide(rows: list[dict], alpha: float, unit: str) -> None:
    """Holm within the claim, then each row's verdict and the reason for an inconclusive one."""
    tested = [r for r in rows if math.isfinite(r["p"])]
    for r, p_adj in zip(tested, stats.holm([r["p"] for r in tested])):
        r["p_holm"] = float(p_adj)
    for r in rows:
        r.setdefault("p_holm", math.nan)
        if not math.isfinite(r["p"]):
            r["verdict"] = NOT_TESTABLE
            r["why"] = r["why"] or "no pair of values to compare"
        elif r["p_holm"] < alpha and r["_sign"] != 0:
            r["verdict"] = HOLDS if r["_sign"] > 0 else CONTRADICTED
        else:
            r["verdict"] = INCONCLUSIVE
            r["why"] = _inconclusive_why(r, alpha, len(tested), unit)
        if r["verdict"] != NOT_TESTABLE and 0 < r["seeds"] < MIN_SEEDS:
            r["why"] = "; ".join(
                w
                for w in (
                    r["why"],
                    f"{r['seeds']} seed(s): about these trained models, not the method (needs {MIN_SEEDS})",
                )
                if w
            )


def _inconclusive_why(r: dict, alpha: float, m: int, unit: str) -> str:
    if math.isfinite(r["_p_min"]) and r["_p_min"] >= alpha:
        return (
            f"n too small: with {r['_n_nonzero']} non-zero differences no test can reach p < {alpha:g} "
            f"(smallest possible p {r['_p_min']:.3g})"
        )
    return f"not significant: p (Holm over the claim's {m} comparisons) = {r['p_holm']:.3g}"


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
    "seeds",
    "p",
    "p_holm",
    "numbers",
    "test",
    "verdict",
    "why",
]


def _seed_counts(case_means: pd.DataFrame) -> dict:
    """(train dataset, test set, fraction, model, pretrain) -> the fewest seeds of any of its cases."""
    if case_means.empty or "n_seeds" not in case_means.columns:
        return {}
    keys = ["train_dataset", "test_set", "fraction", *stats.ENTRY]
    return case_means.groupby(keys)["n_seeds"].min().to_dict()


def check_claims(
    case_means: pd.DataFrame,
    units: pd.DataFrame,
    claims: tuple[Claim, ...] = PAPER_CLAIMS,
    alpha: float = 0.05,
    unit: str = "patient",
    failed: frozenset | set = frozenset(),
) -> pd.DataFrame:
    """Test every claim on a board's unit values (:func:`statistics.unit_values`), with the seeds per
    case from its seed-averaged cases (:func:`statistics.average_seeds`) and ``failed``, the
    (train dataset, test set, fraction, model, pretrain) of every failed fit: one row per claim and
    comparison (:data:`CLAIM_COLUMNS`)."""
    unit = "scan" if unit == "case" else unit  # how the unit is named in the text
    board = _Board(units, frozenset(failed), _seed_counts(case_means), alpha, unit)
    rows: list[dict] = []
    for claim in claims:
        if claim.kind not in _KINDS:
            raise ValueError(
                f"claim {claim.id}: unknown kind {claim.kind!r}; choose from {', '.join(_KINDS)}"
            )
        found = _KINDS[claim.kind](claim, board) or [
            _untestable(
                claim,
                ("–", "–", claim.fraction if claim.fraction else math.nan),
                f"no results at {claim.fraction:g} % of the labels" if claim.fraction else "no results",
            )
        ]
        _decide(found, alpha, unit)
        rows += found
    return pd.DataFrame(rows).reindex(columns=CLAIM_COLUMNS)


def claim_summary(checked: pd.DataFrame) -> list[tuple[str, str]]:
    """Per claim, in order: (claim text, ``holds in 1 of 12; inconclusive in 8 of 12; ...``), with a
    note when its entries have fewer than :data:`MIN_SEEDS` seeds."""
    out = []
    for _, rows in checked.groupby("claim", sort=False):
        counts = rows["verdict"].value_counts()
        n = len(rows)
        parts = [f"{v} in {int(counts[v])} of {n}" for v in VERDICTS if v in counts]
        seeds = rows.loc[rows["verdict"] != NOT_TESTABLE, "seeds"]
        if len(seeds) and 0 < int(seeds.min()) < MIN_SEEDS:
            parts.append(f"{int(seeds.min())} seed(s) per entry: about these trained models, not the method")
        out.append((str(rows["text"].iloc[0]), "; ".join(parts)))
    return out
