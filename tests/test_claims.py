"""The claims check's three outcomes, on small constructed tables whose answers are worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTABLE,
    Claim,
    check_claims,
    claim_summary,
)
from bench3d2d.results import CASE_COLUMNS

HELPS = Claim("helps", "SSL helps m", "pretraining_helps", models=("m",), pretrain="ssl", fraction=5.0)


def _table(values: dict[tuple[str, str], list[float]], seeds: int = 1) -> pd.DataFrame:
    """One case per patient; ``values[(model, pretrain)][i]`` is patient i's Dice (same for every seed)."""
    rows = [
        ["tr", "tr", 5.0, f"c{i}", f"P{i}", model, pre, seed, "dice", v]
        for (model, pre), vs in values.items()
        for i, v in enumerate(vs)
        for seed in range(seeds)
    ]
    return pd.DataFrame(rows, columns=list(CASE_COLUMNS))


def _check(cases: pd.DataFrame, claims=(HELPS,), failed=frozenset()) -> pd.DataFrame:
    means = stats.average_seeds(cases)
    return check_claims(means, stats.unit_values(means), claims, 0.05, "patient", failed)


def test_a_wrong_sign_is_not_a_contradiction_at_n_3():
    # SSL below scratch on all 3 patients: exact p = 2/2^3 = 0.25, no test can reach 0.05
    out = _check(_table({("m", "none"): [0.5, 0.6, 0.7], ("m", "slo"): [0.4, 0.5, 0.6]}))
    row = out.iloc[0]
    assert row["p"] == pytest.approx(0.25) and row["verdict"] == INCONCLUSIVE
    assert "n too small: with 3 non-zero differences" in row["why"]


def test_the_no_test_can_reach_note_counts_non_zero_differences():
    # 6 patients, but 3 differences are 0: the test ranks 3, so p >= 0.25 even though n = 6
    out = _check(
        _table({("m", "none"): [0.5, 0.6, 0.7, 0.5, 0.5, 0.5], ("m", "slo"): [0.4, 0.5, 0.6, 0.5, 0.5, 0.5]})
    )
    assert out.iloc[0]["n_units"] == 6 and "with 3 non-zero differences" in out.iloc[0]["why"]


def test_significant_the_other_way_is_contradicted():
    # SSL below scratch on all 6 patients: p = 2/64 = 0.03125 < 0.05, one comparison, Holm p the same
    out = _check(
        _table({("m", "none"): [0.5, 0.6, 0.7, 0.8, 0.3, 0.4], ("m", "slo"): [0.4, 0.5, 0.6, 0.7, 0.2, 0.3]})
    )
    assert out.iloc[0]["p_holm"] == pytest.approx(0.03125) and out.iloc[0]["verdict"] == CONTRADICTED


def test_holds_only_after_holm_within_the_claim():
    up = [0.4, 0.5, 0.6, 0.7, 0.2, 0.3]
    scratch = [0.3, 0.4, 0.5, 0.6, 0.1, 0.2]
    one = _check(_table({("m", "none"): scratch, ("m", "slo"): up}))
    assert one.iloc[0]["verdict"] == HOLDS  # p = 0.03125 alone
    # two SSL variants, each p = 0.03125: Holm within the claim gives 2 x 0.03125 = 0.0625 for both
    two = _check(_table({("m", "none"): scratch, ("m", "slo"): up, ("m", "faf"): up}))
    assert two["p"].tolist() == pytest.approx([0.03125, 0.03125])
    assert two["p_holm"].tolist() == pytest.approx([0.0625, 0.0625])
    assert (two["verdict"] == INCONCLUSIVE).all() and two["why"].str.startswith("not significant").all()


def test_a_claim_on_a_failed_fit_is_not_testable():
    cases = _table({("m", "none"): [0.0] * 6, ("m", "slo"): [0.4, 0.5, 0.6, 0.7, 0.2, 0.3]})
    out = _check(cases, failed={("tr", "tr", 5.0, "m", "none")})
    assert out.iloc[0]["verdict"] == NOT_TESTABLE and "m (scratch)" in out.iloc[0]["why"]
    assert "failed fit" in out.iloc[0]["why"]


def test_beats_is_tested_against_every_baseline_with_holm():
    claim = Claim("beats", "m beats the baselines", "beats_best_baseline", model="m", pretrain="none")
    cases = _table(
        {
            ("m", "none"): [0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
            ("a", "none"): [0.5, 0.6, 0.7, 0.8, 0.3, 0.4],  # best baseline by mean: beaten on 6 of 6
            ("b", "none"): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # beaten on 6 of 6
        }
    )
    out = _check(cases, (claim,))
    assert sorted(out["comparator"]) == ["a (scratch)", "b (scratch)"]
    # each p = 0.03125; Holm over the claim's 2 comparisons: 0.0625, so neither holds yet
    assert (out["verdict"] == INCONCLUSIVE).all()


def test_fewer_than_three_seeds_say_the_verdict_is_not_about_the_method():
    values = {("m", "none"): [0.3, 0.4, 0.5, 0.6, 0.1, 0.2], ("m", "slo"): [0.4, 0.5, 0.6, 0.7, 0.2, 0.3]}
    one = _check(_table(values, seeds=1))
    assert "1 seed(s): about these trained models, not the method" in one.iloc[0]["why"]
    assert "not the method" in claim_summary(one)[0][1]
    three = _check(_table(values, seeds=3))
    assert "seed" not in three.iloc[0]["why"] and "seed" not in claim_summary(three)[0][1]
