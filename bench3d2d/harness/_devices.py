"""Devices of a sweep's workers (private): ``--devices cuda:0,cuda:1|auto`` and each worker's view.

A worker process sees exactly one device: its ``CUDA_VISIBLE_DEVICES`` names that GPU alone (so
inside the worker it is ``cuda``, ``cuda:0``), or nothing for a ``cpu`` worker. The engine's
default device, ``cuda`` when one is visible, then is the worker's own GPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

__all__ = ["VISIBLE_ENV", "device_env", "parallel_devices", "parse_devices"]

#: The variable CUDA reads to choose which GPUs a process sees (and numbers from 0).
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(
    spec: str | Sequence[str] | None, count: Callable[[], int] = _cuda_count
) -> tuple[str, ...]:
    """``"cuda:0,cuda:1"`` (or a list of them) -> ``("cuda:0", "cuda:1")``; ``"auto"``: every GPU
    this process sees (``count()`` of them); None or empty: no device list. A name may repeat to
    put several workers on one GPU; ``cpu`` is a worker without a GPU; ``cuda`` is ``cuda:0``."""
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [tok.strip() for item in items for tok in str(item).split(",") if tok.strip()]
    if names == ["auto"]:
        n = count()
        if n < 1:
            raise ValueError("--devices auto: no CUDA device is visible to this process")
        return tuple(f"cuda:{i}" for i in range(n))
    bad = [n for n in names if not _DEVICE.fullmatch(n)]
    if bad:
        raise ValueError(
            f"--devices: {', '.join(map(repr, bad))} is not a device (give cuda:N, cpu, or auto alone)"
        )
    return tuple("cuda:0" if n == "cuda" else n for n in names)


def device_env(device: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that show a worker only ``device``. ``cuda:N`` counts the GPUs this process
    sees, so under ``CUDA_VISIBLE_DEVICES=4,5`` ``cuda:1`` is the physical GPU 5."""
    if device == "cpu":
        return {VISIBLE_ENV: ""}
    index = int(device.split(":")[1])
    visible = [v.strip() for v in environ[VISIBLE_ENV].split(",")] if environ.get(VISIBLE_ENV) else None
    if visible is None:
        return {VISIBLE_ENV: str(index)}
    if index >= len(visible):
        raise ValueError(
            f"--devices {device}: {VISIBLE_ENV}={environ[VISIBLE_ENV]} shows {len(visible)} GPU(s)"
        )
    return {VISIBLE_ENV: visible[index]}


def parallel_devices(jobs: int, devices: Sequence[str]) -> int:
    """How many workers really run side by side: ``jobs``, but no more than the distinct devices
    when there is a device list (two workers on one GPU share it)."""
    return max(1, min(jobs, len(set(devices))) if devices else jobs)
