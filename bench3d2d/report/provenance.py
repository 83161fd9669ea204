"""Which code built a report: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench3d2d import __version__


def _git(*args: str) -> str:
    """Output of a git command in the package's folder ("" when git or the checkout is missing)."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def code_version() -> str:
    """``bench3d2d 0.1.0, commit 1a2b3c4`` (``, with uncommitted changes`` when the checkout differs
    from its commit); just the version when the package is not a git checkout."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return f"bench3d2d {__version__}"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return f"bench3d2d {__version__}, commit {commit}" + (", with uncommitted changes" if dirty else "")
