"""Fixed step budgets: the learning-rate schedule per step, validations only where they are used, the top-k
from the low-learning-rate end, the failed-fit stop, and an exact resume."""

from __future__ import annotations

import pytest
from _engine_toy import TOY_PROFILE, Killed, stop_after, toy_fit

from bench3d2d.engine import _fit

#: 12 steps in rounds of 2, cosine with one warmup step; validations from step 9 (rounded up to a round end:
#: 10) and a failed-fit check at the first round end past step 6; the top-2 from step 9 on.
BUDGET = TOY_PROFILE.with_overrides(
    {
        "steps_per_round": None,
        "validate_every": 2,
        "max_steps": 12,
        "schedule": "cosine",
        "warmup": 0.1,
        "validate_from": 0.75,
        "select_from": 0.75,
        "fail_at": 0.5,
        "lr": 0.05,
    }
)


def test_a_fixed_budget_validates_late_and_keeps_only_late_checkpoints(tmp_path):
    res, _ = toy_fit(tmp_path, profile=BUDGET)
    assert [h["step"] for h in res.history] == [6, 10, 12]  # the failed-fit check, then the last quarter
    assert res.stop["reason"] == "max_steps" and res.steps == 12
    assert sorted(c.step for c in res.checkpoints) == [10, 12]  # step 6 ran at a high learning rate
    assert "cosine over 12 steps (warmup 1)" in (tmp_path / "log.txt").read_text()


def test_every_step_gets_the_schedules_learning_rate(tmp_path, monkeypatch):
    calls = []
    real = _fit.lr_factor

    def spy(name, step, total, warmup=0, cooldown=0):
        calls.append((name, step, total, warmup, cooldown))
        return real(name, step, total, warmup, cooldown)

    monkeypatch.setattr(_fit, "lr_factor", spy)
    toy_fit(tmp_path, profile=BUDGET)
    assert calls == [("cosine", s, 12, 1, 3) for s in range(12)]  # cooldown: its default quarter


def test_a_run_that_never_leaves_zero_stops_as_failed_at_fail_at(tmp_path, monkeypatch):
    monkeypatch.setattr(_fit, "validate", lambda *a, **k: 0.0)
    res, _ = toy_fit(tmp_path, profile=BUDGET)
    assert res.stop == {"reason": "failed", "step": 6, "validations": 1, "best_score": 0.0}
    assert res.steps == 6 and [c.step for c in res.checkpoints] == [6]  # kept for the record


def test_a_score_above_zero_before_fail_at_is_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(_fit, "validate", lambda *a, **k: 0.25)
    res, _ = toy_fit(tmp_path, profile=BUDGET)
    assert res.stop["reason"] == "max_steps" and res.steps == 12


@pytest.mark.parametrize("kill_at", [1, 2])
def test_an_interrupted_budget_fit_resumes_to_the_same_result(tmp_path, kill_at):
    straight, cases = toy_fit(tmp_path / "straight", profile=BUDGET)
    with pytest.raises(Killed):
        toy_fit(tmp_path / "killed", profile=BUDGET, on_validation=stop_after(kill_at))
    resumed, resumed_cases = toy_fit(tmp_path / "killed", profile=BUDGET)
    assert resumed.resumed_from_step > 0
    assert resumed.history == straight.history and resumed.stop == straight.stop
    assert [(c.step, c.score) for c in resumed.checkpoints] == [
        (c.step, c.score) for c in straight.checkpoints
    ]
    assert resumed_cases["dice"].tolist() == cases["dice"].tolist()


def test_rounds_without_a_validation_write_last_pt_at_a_cadence(tmp_path, monkeypatch):
    saves = []
    real = _fit._save_last

    def spy(path, model, resume, progress, config):
        saves.append(progress["step"])
        return real(path, model, resume, progress, config)

    monkeypatch.setattr(_fit, "_save_last", spy)
    monkeypatch.setattr(_fit, "CHECKPOINT_EVERY_ROUNDS", 2)
    toy_fit(tmp_path, profile=BUDGET)
    assert saves == [4, 6, 8, 10, 12]  # rounds 2 and 4 (cadence), validations at 6, 10, 12


def test_a_kill_between_validations_resumes_from_the_cadence_checkpoint(tmp_path, monkeypatch):
    straight, cases = toy_fit(tmp_path / "straight", profile=BUDGET)
    monkeypatch.setattr(_fit, "CHECKPOINT_EVERY_ROUNDS", 2)
    real = _fit._save_last

    def killed_after_step_4(path, model, resume, progress, config):
        real(path, model, resume, progress, config)
        if progress["step"] == 4:
            raise Killed(4)

    monkeypatch.setattr(_fit, "_save_last", killed_after_step_4)
    with pytest.raises(Killed):
        toy_fit(tmp_path / "killed", profile=BUDGET)
    monkeypatch.setattr(_fit, "_save_last", real)
    resumed, resumed_cases = toy_fit(tmp_path / "killed", profile=BUDGET)
    assert resumed.resumed_from_step == 4
    assert resumed.history == straight.history and resumed.stop == straight.stop
    assert resumed_cases["dice"].tolist() == cases["dice"].tolist()
