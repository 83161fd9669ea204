"""Atomic file writes for the writers."""

from __future__ import annotations

from pathlib import Path

from bench3d2d._io import atomic_write_bytes


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
