"""Claim files for runs and pre-trainings (private): the library's one lock scheme, from ``bench3d2d._lock``.

The primitive lives in the bottom layer so that the data cache and the engine's SSL pre-training
use the same claims as the harness; this module keeps the harness's import path.
"""

from __future__ import annotations

from bench3d2d._lock import (
    DEFAULT_HEARTBEAT,
    DEFAULT_STALE_AFTER,
    Claim,
    ClaimTimeout,
    claim_alive,
    is_stale,
    pid_alive,
    read_claim,
)

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_STALE_AFTER",
    "Claim",
    "ClaimTimeout",
    "claim_alive",
    "is_stale",
    "pid_alive",
    "read_claim",
]
