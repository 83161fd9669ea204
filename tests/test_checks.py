"""CI's static checks: .ci/run runs .ci/checks, and the pre-commit hooks run the same four tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ["ruff format --check", "ruff check", "lint-imports", "mypy"]


def _checks_script_tools() -> list[str]:
    lines = (ROOT / ".ci" / "checks").read_text().splitlines()
    calls = [re.sub(r'^"\$bin/', "", ln).replace('"', "") for ln in lines if ln.startswith('"$bin/')]
    return [c.removesuffix(" .").strip() for c in calls]


def test_ci_runs_the_static_checks():
    """``.ci/run`` calls ``.ci/checks``, which runs format, lint, the import contract and mypy."""
    assert "bash .ci/checks" in (ROOT / ".ci" / "run").read_text()
    assert _checks_script_tools() == TOOLS


def test_pre_commit_runs_the_same_checks_as_ci():
    """Every CI check is a pre-commit hook (from the project's venv), in the same order."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    entries = [h["entry"].removeprefix(".venv/bin/") for h in hooks]
    assert entries == TOOLS


def test_mypy_is_a_test_dependency_with_a_pinned_floor():
    """The type checker installs with ``.[test]``, and the floors file pins its floor."""
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    version = re.search(r'^    "mypy>=([\d.]+)",', pyproject, flags=re.M).group(1)
    assert f"mypy=={version}.0" in (ROOT / "constraints-floors.txt").read_text().split()
    assert "\n[tool.mypy]\n" in pyproject and 'files = ["bench3d2d", "baselines"]' in pyproject


@pytest.mark.slow
def test_mypy_passes_on_the_library():
    """The type checker (configured in pyproject.toml) finds no error in the library."""
    exe = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(exe).exists():
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
