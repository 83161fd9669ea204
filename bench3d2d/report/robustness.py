"""Ranking robustness as challengeR reports it: does the order hold under other ranking methods?

Three rankings of the working entries of one family (failed fits are ranked after them in each):

* **mean** (aggregate-then-rank): by the mean of the unit (patient) values;
* **mean rank** (rank-then-aggregate): by the mean over the units of the entry's rank within the unit;
* **significance**: by the number of other working entries the entry is significantly better than
  (the family's Holm-adjusted paired Wilcoxon p < alpha, direction from the Hodges-Lehmann shift),
  more is better.

Ties share the best rank ("min"). A family's first place *differs* (is flagged) when the entries
ranked first by mean are not those ranked first by mean rank, or, in a family where some pairwise
test can reach alpha, are not among those ranked first by significance (where no test can reach
alpha, every entry ties on significance, and that ranking says nothing).
"""

from __future__ import annotations

from bench3d2d.evaluation import statistics as stats

METHODS: tuple[str, ...] = ("mean", "mean_rank", "significance")


def _wins(entries: list[tuple], lookup: dict, direction: str, alpha: float) -> dict[tuple, float]:
    """Per entry: the number of other entries of ``entries`` it is significantly better than."""
    wins = dict.fromkeys(entries, 0.0)
    for (a, b), (t, p_adj) in lookup.items():
        if a not in wins or b not in wins or not p_adj < alpha:
            continue
        a_higher = t.hl > 0 or (t.hl == 0 and t.rbc > 0)
        wins[a if a_higher == (direction == "higher") else b] += 1
    return wins


def _rank(key: dict[tuple, float], failed: frozenset) -> dict[tuple, int]:
    """Rank by ``key`` (smaller is better, on the stored precision, ties share the best rank);
    failed entries and entries without a value after all the others."""
    rounded = {e: float(stats.on_stored_precision(v)) for e, v in key.items()}
    ok = [e for e, v in rounded.items() if e not in failed and v == v]
    rest = [e for e in rounded if e not in ok]
    out = {e: 1 + sum(rounded[o] < rounded[e] for o in ok) for e in ok}
    out.update({e: 1 + len(ok) for e in rest})
    return out


def rankings(
    means: dict[tuple, float],
    mean_ranks: dict[tuple, float],
    lookup: dict,
    direction: str,
    alpha: float,
    failed: frozenset = frozenset(),
) -> dict[str, dict[tuple, int]]:
    """``{method: {entry: rank}}`` for each of :data:`METHODS`, over the entries of ``means``."""
    sign = -1.0 if direction == "higher" else 1.0
    wins = _wins([e for e in means if e not in failed], lookup, direction, alpha)
    return {
        "mean": _rank({e: sign * m for e, m in means.items()}, failed),
        "mean_rank": _rank({e: mean_ranks.get(e, float("nan")) for e in means}, failed),
        "significance": _rank({e: -wins.get(e, 0.0) for e in means}, failed),
    }


def first_places(ranks: dict[str, dict[tuple, int]]) -> dict[str, list[tuple]]:
    """Per method: the entries ranked first (several on a tie)."""
    return {m: [e for e, r in ranks[m].items() if r == 1] for m in METHODS}


def first_agrees(firsts: dict[str, list[tuple]], reachable: bool) -> bool:
    """Whether the first place holds across the rankings (the rule in the module docstring)."""
    by_mean = set(firsts["mean"])
    if by_mean != set(firsts["mean_rank"]):
        return False
    return not reachable or by_mean <= set(firsts["significance"])
