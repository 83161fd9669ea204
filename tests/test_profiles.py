"""Profiles: the plateau-stop fields, the ``standard`` profile, and unchanged round-based profiles."""

from __future__ import annotations

import pytest

from bench3d2d.engine.profiles import (
    PAPER,
    PLATEAU_FIELDS,
    SCHEDULE_FIELDS,
    SMOKE,
    STANDARD,
    Profile,
    get_profile,
)


def _plateau(**kw) -> Profile:
    base = {
        "name": "p",
        "depth": 64,
        "crop": (8, 32),
        "batch_size": {"segmentation": 4},
        "rounds": 1,
        "validate_every": 10,
        "patience": 3,
        "max_steps": 95,
    }
    return Profile(**{**base, **kw})


def test_round_based_profiles_keep_their_form_and_settings():
    for prof in (PAPER, SMOKE):
        assert not prof.converges
        assert not set(PLATEAU_FIELDS) & set(prof.to_dict())  # same dict, so same hashes and run ids
    assert SMOKE.rounds == 6 and SMOKE.steps_in_round(52, 4) == 10 and SMOKE.steps_in_round(2, 4) == 4
    assert PAPER.rounds * PAPER.repeats == 800


def test_plateau_profile_derives_its_rounds_and_round_length():
    prof = _plateau()
    assert prof.converges and prof.rounds == 10  # ceil(95 / 10) validations at most
    assert prof.steps_in_round(52, 4) == 10
    assert set(PLATEAU_FIELDS) <= set(prof.to_dict())
    longer = prof.with_overrides({"max_steps": 200, "validate_every": 25, "min_delta": "0.01"})
    assert longer.rounds == 8 and longer.min_delta == 0.01 and longer.steps_in_round(52, 4) == 25


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"patience": None, "min_steps": 10}, "belong to a plateau stop"),
        ({"max_steps": None}, "validate_every and max_steps"),
        ({"validate_from": 1.5}, "fraction of max_steps"),
        ({"fail_at": 0.0}, "fraction of max_steps"),
        ({"schedule": "step"}, "unknown learning-rate schedule"),
        ({"warmup": 1.0}, "warmup is a fraction"),
        ({"cooldown": 0.0}, "cooldown is a fraction"),
        ({"steps_per_round": 5}, "round-based"),
        ({"repeats": 4}, "round-based"),
        ({"patience": 0}, "must be >= 1"),
        ({"min_delta": -0.1}, "min_delta >= 0"),
        ({"min_steps": 100}, "min_steps <= max_steps"),
    ],
)
def test_plateau_settings_are_checked(bad, message):
    with pytest.raises(ValueError, match=message):
        _plateau(**bad)


def test_a_lone_plateau_field_on_a_round_profile_is_refused():
    with pytest.raises(ValueError, match="validate_every and max_steps"):
        SMOKE.with_overrides({"min_steps": 20})
    with pytest.raises(ValueError, match="validate_every and max_steps"):
        SMOKE.with_overrides({"patience": 3})
    with pytest.raises(ValueError, match="need a step budget"):
        SMOKE.with_overrides({"fail_at": 0.5})


def test_overrides_turn_a_round_profile_into_a_plateau_profile():
    prof = SMOKE.with_overrides({"validate_every": "5", "patience": 2, "max_steps": 40})
    assert prof.converges and prof.repeats is None and prof.rounds == 8 and prof.validate_every == 5
    assert prof.steps_in_round(52, 4) == 5 and prof.to_dict()["validate_every"] == 5
    assert SMOKE.repeats == 4 and not SMOKE.converges  # the original is untouched


def test_standard_profile():
    prof = get_profile("standard")
    assert prof is STANDARD and prof.converges and not prof.plateau  # a fixed budget, no early stop
    assert prof.depth % 16 == 0 and prof.depth // 16 != 4  # ReSensNet differs from the FPB net there
    assert prof.amp is False and prof.data_size == "quick"
    assert prof.schedule == "wsd" and 0 < prof.warmup < 0.1 and prof.cooldown == 1 - prof.select_from
    assert prof.rounds * prof.validate_every >= prof.max_steps
    assert 0.5 <= prof.select_from <= 1 and prof.validate_from <= prof.select_from
    assert prof.fail_at is not None and prof.fail_at < prof.validate_from
    assert prof.optimizer == "sgd" and prof.lr == 0.1  # the common recipe applies over it anyway


def test_a_fixed_budget_needs_no_patience():
    prof = _plateau(patience=None, schedule="poly", warmup=0.1, validate_from=0.5, fail_at=0.25)
    assert prof.converges and not prof.plateau and prof.rounds == 10
    assert prof.with_overrides({"schedule": "constant", "fail_at": None}).fail_at is None


def test_new_fields_at_their_defaults_leave_the_form_and_run_ids_alone():
    """Fields added after the form was fixed are written only where they differ from their default, so
    the round-based profiles (and any profile that does not use them) keep their dictionaries and hashes."""
    from bench3d2d.harness._spec import profile_fingerprint

    for prof in (PAPER, SMOKE, _plateau()):
        assert not set(SCHEDULE_FIELDS) & set(prof.to_dict())
    assert profile_fingerprint("smoke") == "f7e18dc9" and profile_fingerprint("paper") == "1edd8b4f"
    assert STANDARD.to_dict()["schedule"] == "wsd" and STANDARD.to_dict()["fail_at"] == 0.5
    assert "cooldown" not in STANDARD.to_dict()  # at its default (0.25)
