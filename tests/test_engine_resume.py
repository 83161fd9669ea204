"""A fit killed with SIGKILL and started again ends with the same metrics as an uninterrupted fit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
