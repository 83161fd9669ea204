"""A sweep backend for tests: the real engine, with a tiny registered model and a tiny profile.

``BENCH3D2D_BACKEND=_sweep_tiny`` registers ``test_tiny`` (a 3-D conv, mean over depth, a 1x1
head; tagged ``ssl``) and the profile ``tiny`` (2 rounds of 1 step, top-1) on import, then does
the work exactly as the default backend does (``bench3d2d.harness._worker``).
"""

from __future__ import annotations

import torch
from torch import nn

from bench3d2d.engine import profiles
from bench3d2d.engine.profiles import Profile
from bench3d2d.harness._worker import execute_pretrain, execute_run
from bench3d2d.models import _registry as registry

__all__ = ["MODEL", "PROFILE", "execute_pretrain", "execute_run", "install", "uninstall"]

MODEL = "test_tiny"
PROFILE = Profile(
    name="tiny",
    depth=64,
    crop=(8, 32),
    batch_size={"segmentation": 2, "reconstruction": 2},
    rounds=2,
    steps_per_round=1,
    top_k=1,
    optimizer="adamw",
    lr=1e-3,
    data_size="quick",
    amp=False,
    eval_batch=8,
    description="test only: 2 rounds x 1 step",
)


class Tiny(nn.Module):
    """Conv3d, ReLU, mean over depth, 1x1 head."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, 4, 3, padding=1)
        self.head = nn.Conv2d(4, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(-1))


def test_tiny(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """A tiny 3-D -> 2-D network for harness tests."""
    return Tiny(in_channels, out_channels)


def install() -> None:
    """Register the model and the profile."""
    registry.register_model(test_tiny, name=MODEL, tags=("ssl", "test"))
    profiles.PROFILES[PROFILE.name] = PROFILE


def uninstall() -> None:
    """Remove them again."""
    registry._REGISTRY.pop(MODEL, None)
    profiles.PROFILES.pop(PROFILE.name, None)


install()
