"""Learning-rate schedules: the one place where a schedule is defined (``docs/training.md``, "Schedules").

A schedule is a pure function of the optimiser step, so resuming a fit at step ``s`` restores its learning
rate exactly, with no scheduler state to save. :func:`lr_factor` gives the multiplier of the profile's
(peak) learning rate ``lr`` before optimiser step ``step`` (0-based) of a fit of ``total`` steps:

* ``constant``: 1 (the paper's protocol, and every profile before schedules existed);
* ``cosine``: a linear warmup from ``1 / (warmup + 1)`` to 1 over ``warmup`` steps, then a half cosine from 1
  to 0 over the remaining steps (timm's default shape, no restarts);
* ``poly``: nnU-Net's polynomial decay ``(1 - step / total) ** 0.9`` after the same optional warmup;
* ``wsd`` (warmup-stable-decay): the same warmup, then the peak rate, then a linear decay to 0 over the
  last ``cooldown`` steps. A fixed budget that keeps the peak rate for most of the run suits models that
  start slowly (IPN), and the decay still ends every run in a settled place; with a cooldown of 20-25 %
  it matches a cosine schedule of the same length (Hägele et al., 2024, "Scaling laws and compute-optimal
  training beyond fixed training durations").

Adding a schedule: add its function to :data:`SCHEDULES` (and a test in ``tests/test_schedules.py``); the
profile field ``schedule`` and ``--hparam schedule=NAME`` then accept it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: nnU-Net's exponent of the polynomial decay.
POLY_EXPONENT = 0.9


def _constant(progress: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _poly(progress: float) -> float:
    return (1.0 - progress) ** POLY_EXPONENT


#: Named schedules: the decay after the warmup as a function of progress in [0, 1) (``wsd``: see
#: :func:`lr_factor`).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "poly": _poly,
    "wsd": _constant,
}


def check_schedule(name: str) -> str:
    """``name`` if it is a known schedule, else a ``ValueError`` listing the known ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return name


def lr_factor(name: str, step: int, total: int, warmup: int = 0, cooldown: int = 0) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based) of ``total``.

    The warmup (``warmup`` steps, linear, never reaching 0) applies to every schedule but ``constant``;
    ``cooldown`` (steps) is the length of ``wsd``'s final linear decay. Steps at or past ``total`` get the
    schedule's value at its end.
    """
    decay = SCHEDULES[check_schedule(name)]
    if name == "constant":
        return 1.0
    warmup = max(0, min(int(warmup), int(total) - 1))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if name == "wsd":
        cooldown = max(1, min(int(cooldown), int(total) - warmup))
        return min(1.0, max(0.0, (int(total) - step) / cooldown))
    span = max(1, int(total) - warmup)
    return decay(min(1.0, (step - warmup) / span))


def describe(name: str, total: int, warmup: int = 0, cooldown: int = 0) -> str:
    """One line for logs and boards, e.g. ``cosine over 400 steps (warmup 20)``."""
    if name == "constant":
        return "constant learning rate"
    parts = [f"warmup {warmup}"] if warmup else []
    if name == "wsd":
        parts.append(f"linear decay over the last {cooldown}")
    return f"{name} over {total} steps" + (f" ({', '.join(parts)})" if parts else "")
