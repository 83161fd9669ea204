"""Fixtures shared by the test modules (pytest puts this folder on ``sys.path`` for them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _no_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time estimates in tests use the fallback table instead of calibrating models (seconds each);
    tests of the calibration itself set ``BENCH3D2D_CALIBRATE=1``."""
    monkeypatch.setenv("BENCH3D2D_CALIBRATE", "0")


@pytest.fixture(scope="session", autouse=True)
def _library_models_registered() -> None:
    """Built-in and packaged models register once, into the real registry, before any test swaps the
    registry for a scratch copy (they would otherwise register into the copy and vanish with it)."""
    from bench3d2d.models import _registry

    _registry._load_library_models()


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fast fake sweep backend (tests/_sweep_fake.py), here and in worker processes.

    Selects it with ``BENCH3D2D_BACKEND``, puts this folder on the workers' ``PYTHONPATH``, and
    returns the folder where it counts its calls (one ``ID.count`` file per run or pre-training).
    """
    counters = tmp_path / "counters"
    counters.mkdir()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_fake")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_COUNTER_DIR", str(counters))
    return counters
