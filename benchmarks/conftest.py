"""Shared settings and fixtures of the benchmark suites (``pytest benchmarks/ --benchmark-only``).

Environment:

* ``BENCH3D2D_BENCH_THREADS`` — torch threads (default 2, this machine's cores);
* ``BENCH3D2D_BENCH_RETAIN=1`` — call :func:`bench3d2d.engine.acceleration.retain_freed_memory` first
  (process-wide: it then applies to the plain *and* the accelerated models of the run).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

from bench3d2d.engine.acceleration import retain_freed_memory

THREADS = int(os.environ.get("BENCH3D2D_BENCH_THREADS", "2"))
RETAIN = os.environ.get("BENCH3D2D_BENCH_RETAIN", "") == "1"
ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Fix the thread count (and the allocator) before any benchmark runs."""
    torch.set_num_threads(THREADS)
    config._bench3d2d_retained = retain_freed_memory() if RETAIN else False  # type: ignore[attr-defined]


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record what the timings depend on: threads, allocator setting, torch build, load, commit."""
    machine_info["bench3d2d"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "retain_freed_memory": bool(getattr(config, "_bench3d2d_retained", False)),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda": torch.cuda.is_available(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
        "commit": _git_commit(),
    }


@pytest.fixture(autouse=True)
def _threads():
    """Every benchmark runs with the configured thread count (a test may not change it for the next)."""
    torch.set_num_threads(THREADS)
    yield
