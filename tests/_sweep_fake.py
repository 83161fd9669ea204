"""A fast fake sweep backend for the harness tests (selected with BENCH3D2D_BACKEND=_sweep_fake).

It does what the real backend does around the engine (build the model from the registry, wait
for the shared pre-training, report progress and validation scores, return the long per-case
table) without training. Every execution appends one line to ``$FAKE_COUNTER_DIR/<id>.count``,
so tests can tell whether a run was executed twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from bench3d2d.harness.sweep import CASE_COLUMNS, RunState, pretrain_state


def _count(ident: str) -> None:
    folder = os.environ.get("FAKE_COUNTER_DIR")
    if folder:
        with open(Path(folder) / f"{ident}.count", "a") as fh:
            fh.write(f"{os.getpid()}\n")


def _score(hparams: dict, step: int) -> float:
    """A smooth fake validation Dice: best near lr = 0.01, rising with the step."""
    import math

    lr = float(hparams.get("lr", 0.01))
    return max(0.0, 1.0 - abs(math.log10(lr) + 2.0) / 4.0) * (1.0 - 0.5 / (step + 1))


def execute_run(spec, run_dir, *, store=None, progress=None, on_validation=None):
    """Fake training: model from the registry, optional pre-training, a few validations, cases."""
    from bench3d2d.models._registry import create_model

    _count(spec.run_id)
    if spec.model in os.environ.get("FAKE_FAIL_MODELS", "").split(","):
        raise RuntimeError(f"fake failure of {spec.model}")
    if spec.run_id in os.environ.get("FAKE_FAIL_RUNS", "").split(","):
        raise RuntimeError(f"fake failure of run {spec.run_id}")
    if spec.run_id in os.environ.get("FAKE_CRASH_RUNS", "").split(","):
        os.kill(os.getpid(), 9)  # the worker dies as if killed for memory
    create_model(spec.model, depth=64)  # a factory that raises makes the run fail, as in the engine
    if spec.pretrain != "none":
        # the runner ensures the pre-training before it calls the backend
        assert pretrain_state(spec.pretrain_spec(), store) is RunState.COMPLETE
    steps = int(os.environ.get("FAKE_STEPS", "3"))
    sleep = float(os.environ.get("FAKE_SLEEP", "0"))
    (Path(run_dir) / "checkpoints").mkdir(exist_ok=True)
    for step in range(1, steps + 1):
        time.sleep(sleep / steps)
        if on_validation is not None:
            on_validation(step, _score(spec.hparams, step))
        if progress is not None:
            progress(step, steps, "fake")
    rows = []
    for test_set in spec.test_sets:
        for case in range(3):
            rows.append(
                {
                    "train_dataset": spec.train_dataset,
                    "test_set": test_set,
                    "fraction": spec.fraction,
                    "case_id": f"case{case}",
                    "model": spec.model,
                    "pretrain": spec.pretrain,
                    "seed": spec.seed,
                    "metric": "dice",
                    "value": 0.5 + 0.1 * case,
                }
            )
    return pd.DataFrame(rows, columns=list(CASE_COLUMNS))


def execute_pretrain(pre, out_dir, *, store=None, progress=None):
    """Fake pre-training: writes a weights file."""
    _count(pre.key)
    if pre.model in os.environ.get("FAKE_FAIL_PRETRAIN", "").split(","):
        raise RuntimeError(f"fake pre-training failure of {pre.model}")
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    weights = Path(out_dir) / "weights.pt"
    weights.write_bytes(b"fake")
    return {"weights": str(weights)}
