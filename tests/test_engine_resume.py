"""A fit killed with SIGKILL and started again ends with the same metrics as an uninterrupted fit;
an unreadable ``last.pt`` heals (top-k fallback or restart) instead of failing the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _engine_toy import Killed, stop_after, toy_fit

from bench3d2d.engine import checkpoints as ckpt_io

TOY = Path(__file__).resolve().parent / "_engine_toy.py"


def _job(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(TOY), str(out)], stdout=subprocess.PIPE, text=True, env=env)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_metrics(tmp_path):
    killed_dir = tmp_path / "killed"
    proc = _job(killed_dir)
    last = killed_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists():
        assert proc.poll() is None, "the job ended before writing its first state"
        assert time.time() < deadline, "no resumable state after 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = ckpt_io.read(last)["progress"]
    assert not state["finished"], "the job finished before the kill; the test needs a longer toy run"
    killed_at = state["step"]

    resumed = _result(_job(killed_dir))
    assert resumed["resumed_from"] == killed_at > 0
    straight = _result(_job(tmp_path / "straight"))
    assert straight["resumed_from"] == 0
    assert resumed["history"] == straight["history"]
    assert resumed["dice"] == straight["dice"]
    assert resumed["hd95"] == straight["hd95"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _interrupted(out: Path) -> None:
    with pytest.raises(Killed):
        toy_fit(out, on_validation=stop_after(2))  # 3 rounds: stopped after round 2, step 4


def test_truncated_last_pt_falls_back_to_the_newest_topk_state_and_completes(tmp_path):
    straight, straight_cases = toy_fit(tmp_path / "straight")
    _interrupted(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints"
    topk = sorted(ckpt.glob("top_step*.pt"))
    assert topk and all("resume" in ckpt_io.read(p) for p in topk)  # mid-run: resumable states
    _truncate(ckpt / "last.pt")
    with pytest.raises(ckpt_io.CheckpointError):
        ckpt_io.read(ckpt / "last.pt")
    healed, cases = toy_fit(tmp_path / "run")
    newest = max(int(p.name[len("top_step") : -3]) for p in topk)
    assert healed.resumed_from_step == newest > 0
    assert healed.history == straight.history
    assert cases["dice"].tolist() == straight_cases["dice"].tolist()
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "could not be read" in log and "falling back to the top-k checkpoint" in log
    # once finished, the top-k files hold weights only again and last.pt is readable
    weights_only = {"format", "kind", "meta", "state_dict"}
    assert all(set(ckpt_io.read(c.path)) == weights_only for c in healed.checkpoints)
    assert ckpt_io.read(ckpt / "last.pt")["progress"]["finished"]


def test_unreadable_last_pt_without_a_usable_topk_state_restarts_from_scratch(tmp_path):
    straight, straight_cases = toy_fit(tmp_path / "straight")
    _interrupted(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints"
    for path in [ckpt / "last.pt", *ckpt.glob("top_step*.pt")]:
        _truncate(path)
    healed, cases = toy_fit(tmp_path / "run")
    assert healed.resumed_from_step == 0
    assert healed.history == straight.history
    assert cases["dice"].tolist() == straight_cases["dice"].tolist()
    assert "restarts from scratch" in (tmp_path / "run" / "log.txt").read_text()


def test_truncated_last_pt_of_a_finished_fit_retrains_to_the_same_result(tmp_path):
    first, first_cases = toy_fit(tmp_path / "run")
    _truncate(tmp_path / "run" / "checkpoints" / "last.pt")
    again, cases = toy_fit(tmp_path / "run")  # top-k files of a finished fit hold no state: restart
    assert again.resumed_from_step == 0 and again.history == first.history
    assert cases["dice"].tolist() == first_cases["dice"].tolist()


def test_ssl_pretraining_heals_a_truncated_last_pt_and_an_unreadable_cache(tmp_path):
    from _engine_toy import TOY_PROFILE, toy_cases

    from bench3d2d.engine import FitOptions
    from bench3d2d.engine.ssl import INFO, WEIGHTS, _cached, pretrain_on

    train, val = toy_cases(2, 0, "t", with_maps=True), toy_cases(1, 1, "v", with_maps=True)
    options = FitOptions(TOY_PROFILE.with_overrides({"rounds": 2}), 0)
    weights, first = pretrain_on("fpbnet", train, val, "slo", options, out_dir=tmp_path / "pre")
    _truncate(tmp_path / "pre" / "checkpoints" / "last.pt")
    weights2, again = pretrain_on("fpbnet", train, val, "slo", options, out_dir=tmp_path / "pre")
    assert again.history == first.history and weights2 == weights
    # a cached pre-training whose weights cannot be read is made again, not reused
    (tmp_path / "pre" / INFO).write_text('{"score": 0.5}')
    _truncate(tmp_path / "pre" / WEIGHTS)
    assert _cached(tmp_path / "pre", "key") is None
    assert not (tmp_path / "pre" / WEIGHTS).exists() and not (tmp_path / "pre" / INFO).exists()
