"""Named training profiles: ``standard`` (the default: converged runs that stop on a validation
plateau), ``smoke`` (a pipeline check in CPU minutes) and ``paper`` (the published protocol).

A profile fixes everything about training that is not the model or the data: preprocessing
depth, crop size, batch sizes per task, length, validation cadence, top-k, optimiser and the
synthetic data size. ``paper`` follows ``docs/protocol.md`` §3-§7 exactly (SGD lr 0.1,
momentum 0.9, weight decay 1e-4, constant lr, 40 rounds x 20 repeats = 800 passes, batch 8
segmentation / 4 reconstruction, crops 32 x 256, top-5, depth 128).

``smoke`` is a pipeline check, not a benchmark: sized so that the whole sweep runs in minutes on a
2-core CPU, for CI and for trying the tool (see ``docs/training.md``): tiny synthetic volumes at
depth 64 (the FPB net's minimum),
crops 8 x 32, batch 4 for both tasks, 6 rounds whose length follows the paper's rule
⌊repeats·n/b⌋ with 4 repeats, clamped to [4, 10] steps, a top-3 ensemble, and the paper's
optimiser (SGD lr 0.1, momentum 0.9, weight decay 1e-4).

``standard`` trains until the validation score stops improving: a *plateau profile* sets
``validate_every``, ``patience`` and ``max_steps`` (and optionally ``min_steps``, ``min_delta``),
``fit`` validates every ``validate_every`` steps and stops after ``patience`` validations without a gain
of more than ``min_delta`` once ``min_steps`` are done, or at ``max_steps`` (``rounds`` is then derived,
the most validations). It uses the quick synthetic data at depth 96, where ReSensNet and the FPB net
differ, in float32; its step counts come from the learning curves (``docs/training.md``). The
optimiser fields of every profile are the paper's; the run's recipe set
(:mod:`bench3d2d.engine.recipes`) applies over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    """Everything about training that is neither the model nor the data."""

    name: str
    depth: int
    crop: tuple[int, int]
    batch_size: Mapping[str, int]
    rounds: int
    repeats: int | None = None
    steps_per_round: int | None = None
    min_steps_per_round: int = 1
    max_steps_per_round: int | None = None
    top_k: int = 5
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    data_size: str = "paper"
    amp: bool = True
    channels_last: bool = False
    eval_batch: int = 1
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    validate_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    min_steps: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.converges:
            self._check_plateau()
        elif (self.repeats is None) == (self.steps_per_round is None):
            raise ValueError(f"profile {self.name!r}: give exactly one of repeats and steps_per_round")
        if self.rounds < 1 or self.top_k < 1:
            raise ValueError(f"profile {self.name!r}: rounds and top_k must be >= 1")

    @property
    def converges(self) -> bool:
        """Whether the fit stops on a validation plateau (``patience`` set) instead of after ``rounds``."""
        return (
            self.patience is not None
            or self.validate_every is not None
            or self.max_steps is not None
            or bool(self.min_steps)
            or bool(self.min_delta)
        )

    def _check_plateau(self) -> None:
        """Plateau mode: validate every ``validate_every`` steps, at most ``max_steps``; ``rounds`` is
        derived (the most validations, ⌈max_steps / validate_every⌉)."""
        name = self.name
        if self.validate_every is None or self.patience is None or self.max_steps is None:
            raise ValueError(
                f"profile {name!r}: a plateau stop needs validate_every, patience and max_steps (all three)"
            )
        if self.repeats is not None or self.steps_per_round is not None:
            raise ValueError(
                f"profile {name!r}: repeats/steps_per_round are for round-based profiles; "
                "a plateau profile validates every validate_every steps"
            )
        if int(self.validate_every) < 1 or int(self.patience) < 1 or float(self.min_delta) < 0:
            raise ValueError(f"profile {name!r}: validate_every and patience must be >= 1, min_delta >= 0")
        if not 0 <= int(self.min_steps) <= int(self.max_steps) or int(self.max_steps) < 1:
            raise ValueError(
                f"profile {name!r}: need 0 <= min_steps <= max_steps and max_steps >= 1 "
                f"(got min_steps {self.min_steps}, max_steps {self.max_steps})"
            )
        object.__setattr__(self, "rounds", -(-int(self.max_steps) // int(self.validate_every)))

    def batch_for(self, task_name: str) -> int:
        """Batch size for a task name (``segmentation`` or ``reconstruction``)."""
        try:
            return int(self.batch_size[task_name])
        except KeyError:
            raise ValueError(
                f"profile {self.name!r} has no batch size for task {task_name!r} "
                f"(has: {', '.join(self.batch_size)})"
            ) from None

    def steps_in_round(self, n_scans: int, batch: int) -> int:
        """Optimiser steps in one round: the fixed count, or ⌊repeats·n/b⌋ clamped to
        [``min_steps_per_round``, ``max_steps_per_round``] (at least 1); in a plateau profile
        ``validate_every`` (the last round may be cut short by ``max_steps``, see :func:`fit`)."""
        if self.validate_every is not None:
            return int(self.validate_every)
        if self.steps_per_round is not None:
            return int(self.steps_per_round)
        steps = max(1, self.min_steps_per_round, (int(self.repeats) * n_scans) // batch)
        return steps if self.max_steps_per_round is None else min(steps, int(self.max_steps_per_round))

    def with_overrides(self, hparams: Mapping[str, Any] | None) -> Profile:
        """A copy with hyper-parameters replaced (``lr``, ``weight_decay``, ``optimizer``,
        ``momentum``, ``betas``, ``batch_size`` (int: every task), ``rounds``, ``steps_per_round``,
        ``repeats``, ``min_steps_per_round``, ``max_steps_per_round``, ``top_k``, ``crop``, ``amp``,
        ``channels_last``, ``eval_batch``, and the plateau stop's ``validate_every``, ``patience``,
        ``min_delta``, ``min_steps``, ``max_steps``). Giving ``validate_every``, ``patience`` and
        ``max_steps`` to a round-based profile makes it a plateau profile (its ``repeats`` /
        ``steps_per_round`` are dropped unless given too); in a plateau profile ``rounds`` is derived,
        so overriding it has no effect."""
        if not hparams:
            return self
        allowed = set(OVERRIDABLE)
        unknown = set(hparams) - allowed
        if unknown:
            raise ValueError(
                f"unknown hyper-parameter override(s) {sorted(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        changes = dict(hparams)
        if "batch_size" in changes and not isinstance(changes["batch_size"], Mapping):
            changes["batch_size"] = {k: int(changes["batch_size"]) for k in self.batch_size}
        if "crop" in changes:
            changes["crop"] = tuple(int(c) for c in changes["crop"])
        if "betas" in changes:
            changes["betas"] = tuple(float(b) for b in changes["betas"])
        plateau_given = any(changes.get(k) is not None for k in ("validate_every", "patience", "max_steps"))
        if plateau_given and "repeats" not in changes and "steps_per_round" not in changes:
            changes["repeats"] = changes["steps_per_round"] = None
        if "steps_per_round" in changes and changes["steps_per_round"] is not None:
            changes.setdefault("repeats", None)
        if "repeats" in changes and changes["repeats"] is not None:
            changes.setdefault("steps_per_round", None)
        for key in ("lr", "weight_decay", "momentum", "min_delta"):
            if key in changes:
                changes[key] = float(changes[key])
        for key in ("validate_every", "patience", "min_steps", "max_steps"):
            if changes.get(key) is not None:
                changes[key] = int(changes[key])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (recorded with every run). The plateau fields appear only in plateau
        profiles, so that round-based profiles keep the form (and the hashes) they always had."""
        out = asdict(self)
        out["batch_size"] = dict(self.batch_size)
        out["crop"] = list(self.crop)
        out["betas"] = list(self.betas)
        out["extra"] = dict(self.extra)
        if not self.converges:
            for key in PLATEAU_FIELDS:
                del out[key]
        return out


#: The plateau-stop fields (``None``/0 in round-based profiles).
PLATEAU_FIELDS = ("validate_every", "patience", "min_delta", "min_steps", "max_steps")

#: Keys :meth:`Profile.with_overrides` accepts.
OVERRIDABLE = (
    "lr",
    "weight_decay",
    "optimizer",
    "momentum",
    "betas",
    "batch_size",
    "rounds",
    "steps_per_round",
    "repeats",
    "min_steps_per_round",
    "max_steps_per_round",
    "top_k",
    "crop",
    "amp",
    "channels_last",
    "eval_batch",
    *PLATEAU_FIELDS,
)


PAPER = Profile(
    name="paper",
    depth=128,
    crop=(32, 256),
    batch_size={"segmentation": 8, "reconstruction": 4},
    rounds=40,
    repeats=20,
    top_k=5,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    data_size="paper",
    amp=True,
    description="The published protocol: SGD lr 0.1 (momentum 0.9, wd 1e-4), 40 rounds x 20 repeats "
    "= 800 passes, batch 8 (segmentation) / 4 (reconstruction), crops 32 x 256, depth 128, top-5.",
)

SMOKE = Profile(
    name="smoke",
    depth=64,
    crop=(8, 32),
    batch_size={"segmentation": 4, "reconstruction": 4},
    rounds=6,
    repeats=4,
    min_steps_per_round=4,
    max_steps_per_round=10,
    top_k=3,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    data_size="quick",
    amp=True,
    eval_batch=4,
    description="Pipeline check, not a benchmark (runs stop long before they converge): tiny synthetic "
    "volumes at depth 64, crops 8 x 32, batch 4, 6 rounds of "
    "⌊4·n/4⌋ steps clamped to [4, 10], the paper's SGD (lr 0.1, momentum 0.9, wd 1e-4), top-3; "
    "bf16 autocast where the CPU has native bf16.",
)

STANDARD = Profile(
    name="standard",
    depth=96,
    crop=(8, 32),
    batch_size={"segmentation": 4, "reconstruction": 4},
    rounds=1,  # derived: ⌈max_steps / validate_every⌉ validations at most
    validate_every=10,
    patience=5,
    min_delta=0.005,
    min_steps=60,
    max_steps=400,
    top_k=3,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    data_size="quick",
    amp=False,
    eval_batch=4,
    description="Converged runs on the quick synthetic data (step counts from the learning curves, see "
    "docs/training.md): depth 96 (the data's own depth; ReSensNet differs from the FPB net there), crops "
    "8 x 32, batch 4, float32, validation every 10 steps, stop after 5 validations without a Dice gain > "
    "0.005 (counted from the first score above zero) once 60 steps are done, at most 400 steps, top-3.",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (STANDARD, SMOKE, PAPER)}


def get_profile(name: str | Profile) -> Profile:
    """A profile by name (``standard``, ``smoke`` or ``paper``); a :class:`Profile` is returned unchanged."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return list(PROFILES)
