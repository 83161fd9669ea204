"""Converged fits: the plateau stop, its record, and resuming it (the patience state is resumable)."""

from __future__ import annotations

import math

import pytest
import torch
from _engine_toy import TOY_PROFILE, Killed, stop_after, toy_fit

from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine._fit import plateau_update

#: The toy profile with a plateau stop: validate every 2 steps, patience 2, at least 4 steps, at most 20.
PLATEAU = TOY_PROFILE.with_overrides(
    {"steps_per_round": None, "validate_every": 2, "patience": 2, "min_steps": 4, "max_steps": 20, "lr": 0.02}
)


def test_plateau_update_counts_validations_without_a_large_enough_gain():
    state = {"best": None, "stale": 0}
    state = plateau_update(state, 0.5, 0.01)
    assert state == {"best": 0.5, "stale": 0}
    state = plateau_update(state, 0.505, 0.01)  # a gain, but not by more than min_delta
    assert state == {"best": 0.5, "stale": 1}
    state = plateau_update(state, math.nan, 0.01)
    assert state == {"best": 0.5, "stale": 2}
    assert plateau_update(state, 0.52, 0.01) == {"best": 0.52, "stale": 0}
    assert plateau_update({"best": None, "stale": 0}, math.nan, 0.0) == {"best": None, "stale": 1}


def _expected_stop(history, prof):
    """Replays the rule on a history: the first validation after which the fit had to stop."""
    state = {"best": None, "stale": 0}
    for i, h in enumerate(history):
        state = plateau_update(state, h["score"], prof.min_delta)
        if h["step"] >= prof.min_steps and state["stale"] >= prof.patience:
            return i + 1, "plateau"
        if h["step"] >= prof.max_steps:
            return i + 1, "max_steps"
    return None, None


def test_fit_stops_on_a_plateau_and_records_why(tmp_path):
    res, _ = toy_fit(tmp_path / "a", profile=PLATEAU)
    n, reason = _expected_stop(res.history, PLATEAU)
    assert (len(res.history), res.stop["reason"]) == (n, reason) == (len(res.history), "plateau")
    assert res.steps == res.stop["step"] == res.history[-1]["step"] < PLATEAU.max_steps
    assert [h["step"] for h in res.history] == [2 * (i + 1) for i in range(n)]
    assert res.stop["stale"] >= PLATEAU.patience and res.stop["validations"] == n
    assert res.k == min(PLATEAU.top_k, n)
    last = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert last["progress"]["finished"] and last["progress"]["stop"]["reason"] == "plateau"
    assert "stopped (plateau)" in (tmp_path / "a" / "log.txt").read_text()
    again, _ = toy_fit(tmp_path / "a", profile=PLATEAU)  # a finished fit returns its record
    assert again.stop == res.stop and again.history == res.history


def test_fit_stops_at_max_steps_with_a_short_last_round(tmp_path):
    prof = PLATEAU.with_overrides({"validate_every": 4, "max_steps": 10, "patience": 50, "min_steps": 0})
    res, _ = toy_fit(tmp_path, profile=prof)
    assert [h["step"] for h in res.history] == [4, 8, 10]
    assert res.stop["reason"] == "max_steps" and res.stop["step"] == res.steps == 10


def test_round_based_fit_records_its_stop_as_rounds(tmp_path):
    res, _ = toy_fit(tmp_path)
    assert res.stop == {"reason": "rounds", "step": 6, "validations": 3}


def test_interrupted_plateau_fit_resumes_with_its_patience_state(tmp_path):
    straight, cases = toy_fit(tmp_path / "straight", profile=PLATEAU)
    n = len(straight.history)
    # interrupt when the patience counter is already running, so that losing it would stop later
    state, stale_at = {"best": None, "stale": 0}, None
    for i, h in enumerate(straight.history):
        state = plateau_update(state, h["score"], PLATEAU.min_delta)
        if state["stale"] and stale_at is None:
            stale_at = i
    assert stale_at is not None and stale_at + 1 < n
    with pytest.raises(Killed):
        toy_fit(tmp_path / "killed", profile=PLATEAU, on_validation=stop_after(stale_at + 1))
    state = ckpt_io.read(tmp_path / "killed" / "checkpoints" / "last.pt")["progress"]
    assert not state["finished"] and state["plateau"]["stale"] >= 1
    resumed, resumed_cases = toy_fit(tmp_path / "killed", profile=PLATEAU)
    assert resumed.resumed_from_step == state["step"] > 0
    assert resumed.history == straight.history and resumed.stop == straight.stop
    assert [(c.path.name, c.score) for c in resumed.checkpoints] == [
        (c.path.name, c.score) for c in straight.checkpoints
    ]
    assert resumed_cases["dice"].tolist() == cases["dice"].tolist()


def test_plateau_fit_heals_from_a_topk_state_after_a_truncated_last_pt(tmp_path):
    straight, _ = toy_fit(tmp_path / "straight", profile=PLATEAU)
    with pytest.raises(Killed):
        toy_fit(tmp_path / "killed", profile=PLATEAU, on_validation=stop_after(2))
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    healed, _ = toy_fit(tmp_path / "killed", profile=PLATEAU)
    assert healed.resumed_from_step > 0
    assert healed.history == straight.history and healed.stop == straight.stop


def test_patience_counts_from_the_first_score_above_zero():
    """A run that has not started learning (Dice 0: no lesion predicted) is not on a plateau: IPN's
    flat start lasts 60-250 steps; once a score above zero appears, patience counts as usual."""
    state = {"best": None, "stale": 0}
    for _ in range(20):
        state = plateau_update(state, 0.0, 0.005)
    assert state == {"best": 0.0, "stale": 0}
    state = plateau_update(state, 0.3, 0.005)
    assert state == {"best": 0.3, "stale": 0}
    for n in range(1, 4):
        state = plateau_update(state, 0.0, 0.005)  # a collapse after learning is counted
        assert state["stale"] == n
