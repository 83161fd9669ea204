"""Fault injection for tests: the tiny real engine (tests/_sweep_tiny.py) that SIGKILLs its own process.

``FAULT_AT=<phase>:<n>`` kills the process with SIGKILL at the n-th event of one phase in this
process, exactly as ``kill -9`` from outside would at that moment:

* ``prepare``: a case's temporary cache folder was just created (before its arrays are written);
* ``fit``: a validation was just made (checkpoints of that step written);
* ``evaluate``: a prediction file is about to be written (some are, ``cases.csv`` is not);
* ``report``: a report file's temporary copy is written, before it is moved into place.

Import it (or select it with ``BENCH3D2D_BACKEND=_sweep_fault``) to arm the hooks.
"""

from __future__ import annotations

import os
import signal

import _sweep_tiny

from bench3d2d import _io
from bench3d2d.data import cache
from bench3d2d.engine import _run
from bench3d2d.harness._worker import execute_pretrain
from bench3d2d.harness._worker import execute_run as _execute_run

__all__ = ["execute_pretrain", "execute_run"]

_phase, _, _n = os.environ.get("FAULT_AT", "").partition(":")
_count = [0]


def _tick(phase: str) -> None:
    if phase != _phase:
        return
    _count[0] += 1
    if _count[0] == int(_n):
        os.kill(os.getpid(), signal.SIGKILL)


def execute_run(spec, run_dir, *, store, progress=None, on_validation=None):
    """The tiny engine run, with a kill after the chosen validation."""

    def validated(step: int, score: float) -> None:
        if on_validation is not None:
            on_validation(step, score)
        _tick("fit")

    return _execute_run(spec, run_dir, store=store, progress=progress, on_validation=validated)


def _arm() -> None:
    make_temp_dir, save_npz, atomic_write = cache.make_temp_dir, _run._save_npz_atomic, _io.atomic_write

    def temp_dir(final):
        path = make_temp_dir(final)
        _tick("prepare")
        return path

    def prediction(path, arrays):
        _tick("evaluate")
        save_npz(path, arrays)

    def write_then_tick(path, write):
        return atomic_write(path, lambda fh: (write(fh), fh.flush(), _tick("report")))

    cache.make_temp_dir = temp_dir
    _run._save_npz_atomic = prediction
    _io.atomic_write = write_then_tick


_sweep_tiny.install()
if _phase:
    _arm()
