"""All pairs of one family: paired tests with scans paired per pair, and the one Holm family.

* **Scans paired per pair.** For entries A and B, only the scans where *both* have a value enter the
  unit (patient) means of that pair, so a patient's mean never averages different scans for A and for
  B (HD95 is NaN on scans where both masks are empty, and that differs between entries).
* **The Holm family** is every pair of *distinct, working* entries. Left out, with the reason in the
  ``holm_family`` column: pairs with an entry that is a failed fit (its comparisons are not a
  contest between methods), and pairs with an entry whose values are bit-identical to an earlier
  entry's on every scan (its *twin*: two names for one set of numbers would enlarge the family
  without adding a comparison). A twin's pairs carry its twin's adjusted p-value.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from bench3d2d.evaluation import statistics as stats

IN_FAMILY = "yes"


def twins(case_wide: pd.DataFrame, order: list[tuple]) -> dict[tuple, tuple]:
    """``{entry: earlier entry}`` for every entry whose scan values (NaNs included) are bit-identical
    to those of an earlier entry in ``order``."""
    out: dict[tuple, tuple] = {}
    for i, e in enumerate(order):
        for first in order[:i]:
            if first in out:
                continue
            a, b = case_wide[e].to_numpy(dtype=float), case_wide[first].to_numpy(dtype=float)
            if np.array_equal(a, b, equal_nan=True):
                out[e] = first
                break
    return out


def pair_units(
    case_wide: pd.DataFrame, unit_of: pd.Series, a: tuple, b: tuple
) -> tuple[pd.Series, pd.Series]:
    """Unit means of ``a`` and ``b`` over the scans where both have a value (paired per pair)."""
    both = case_wide.loc[:, [a, b]].dropna()
    units = both.groupby(unit_of.reindex(both.index).to_numpy()).mean()
    return units[a], units[b]


def _exclusion(a: tuple, b: tuple, failed: frozenset, twin_of: dict) -> str:
    """Why the pair is left out of the Holm family ("" when it is in)."""
    for e in (a, b):
        if e in failed:
            return f"no: {stats.entry_label(*e)} is a failed fit"
    for e in (a, b):
        if e in twin_of:
            return f"no: {stats.entry_label(*e)} is identical to {stats.entry_label(*twin_of[e])}"
    return IN_FAMILY


def _twin_p(a: tuple, b: tuple, twin_of: dict, adjusted: dict) -> float:
    """A twin's pair takes the adjusted p of the same pair with its twin (NaN for twin vs twin)."""
    ra, rb = twin_of.get(a, a), twin_of.get(b, b)
    if ra == rb:
        return math.nan
    return adjusted.get((ra, rb), adjusted.get((rb, ra), math.nan))


def pair_table(
    fam: dict,
    order: list[tuple],
    case_wide: pd.DataFrame,
    unit_of: pd.Series,
    failed: frozenset,
    alpha: float,
    confidence: float,
) -> tuple[list[dict], dict[tuple, tuple[stats.PairTest, float]]]:
    """Every pair of entries of a family: rows of ``pairwise.csv`` and ``{(a, b): (test, Holm p)}``."""
    twin_of = twins(case_wide, order)
    pair_list = list(itertools.combinations(order, 2))
    tests = {
        (a, b): stats.paired_test(*pair_units(case_wide, unit_of, a, b), confidence) for a, b in pair_list
    }
    why = {pair: _exclusion(*pair, failed, twin_of) for pair in pair_list}
    family = [pair for pair in pair_list if why[pair] == IN_FAMILY]
    adjusted = dict(zip(family, stats.holm([tests[pair].p for pair in family])))
    for pair in pair_list:
        if pair not in adjusted and not any(e in failed for e in pair):
            adjusted[pair] = _twin_p(*pair, twin_of, adjusted)
    rows, lookup = [], {}
    for a, b in pair_list:
        t, p_adj = tests[(a, b)], float(adjusted.get((a, b), math.nan))
        lookup[(a, b)] = (t, p_adj)
        rows.append(
            {
                **fam,
                "model_a": a[0],
                "pretrain_a": a[1],
                "entry_a": stats.entry_label(*a),
                "model_b": b[0],
                "pretrain_b": b[1],
                "entry_b": stats.entry_label(*b),
                **{k: getattr(t, k) for k in ("n", "n_nonzero", "mean_diff", "hl", "hl_low", "hl_high")},
                **{k: getattr(t, k) for k in ("cles", "rbc", "W", "p")},
                "p_holm": p_adj,
                "holm_family": why[(a, b)],
                "method": t.method,
                "p_min": t.p_min,
                "significant": bool(p_adj < alpha),
            }
        )
    return rows, lookup
