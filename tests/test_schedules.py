"""Learning-rate schedules: their shape, exact resume, and the fixed step budget of the standard profile."""

from __future__ import annotations

import itertools
import math

import pytest

from bench3d2d.engine.schedules import SCHEDULES, describe, lr_factor


def test_constant_is_one_everywhere():
    assert {lr_factor("constant", s, 100, warmup=10) for s in range(120)} == {1.0}


def test_cosine_warms_up_linearly_then_decays_to_zero():
    total, warmup = 100, 10
    values = [lr_factor("cosine", s, total, warmup) for s in range(total)]
    assert values[:warmup] == pytest.approx([(s + 1) / 11 for s in range(warmup)])
    assert values[warmup] == 1.0  # the peak right after the warmup
    assert values[55] == pytest.approx(0.5)  # half-way through the decay: 0.5 (1 + cos(pi / 2))
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :]))
    assert 0 < values[-1] < 1e-3 and lr_factor("cosine", total, total, warmup) == 0.0


def test_poly_is_nnunets_decay():
    assert lr_factor("poly", 0, 200) == 1.0
    assert lr_factor("poly", 100, 200) == pytest.approx(0.5**0.9)
    assert lr_factor("poly", 199, 200) == pytest.approx((1 / 200) ** 0.9)


def test_wsd_holds_the_peak_then_decays_linearly_to_zero_over_the_cooldown():
    values = [lr_factor("wsd", s, 400, warmup=20, cooldown=100) for s in range(400)]
    assert values[:20] == pytest.approx([(s + 1) / 21 for s in range(20)])
    assert set(values[20:301]) == {1.0}  # the stable phase ends where the cooldown starts
    assert values[350] == pytest.approx(0.5) and values[399] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(values[20:]))
    assert describe("wsd", 400, 20, 100) == "wsd over 400 steps (warmup 20, linear decay over the last 100)"


def test_an_unknown_schedule_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="constant, cosine, poly, wsd"):
        lr_factor("step", 0, 10)
    assert set(SCHEDULES) == {"constant", "cosine", "poly", "wsd"}
    assert describe("cosine", 400, 20) == "cosine over 400 steps (warmup 20)"


def test_stretched_schedule_has_the_same_shape():
    """Twice the budget, same schedule: the factor at the same fraction of the budget is the same."""
    for name in ("cosine", "poly", "wsd"):
        for frac in (0.1, 0.3, 0.75, 0.9):
            a = lr_factor(name, round(frac * 400), 400, 20, 100)
            b = lr_factor(name, round(frac * 800), 800, 40, 200)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
