"""Named training profiles: ``standard`` (the default: converged runs, a fixed step budget under a
decaying learning rate), ``smoke`` (a pipeline check in CPU minutes) and ``paper`` (the published protocol).

A profile fixes everything about training that is not the model or the data: preprocessing
depth, crop size, batch sizes per task, length, learning-rate schedule, validation cadence, top-k,
optimiser and the synthetic data size. ``paper`` follows ``docs/protocol.md`` §3-§7 exactly (SGD lr 0.1,
momentum 0.9, weight decay 1e-4, constant lr, 40 rounds x 20 repeats = 800 passes, batch 8
segmentation / 4 reconstruction, crops 32 x 256, top-5, depth 128).

``smoke`` is a pipeline check, not a benchmark: sized so that the whole sweep runs in minutes on a
2-core CPU, for CI and for trying the tool (see ``docs/training.md``): tiny synthetic volumes at
depth 64 (the FPB net's minimum), crops 8 x 32, batch 4 for both tasks, 6 rounds whose length follows
the paper's rule ⌊repeats·n/b⌋ with 4 repeats, clamped to [4, 10] steps, a top-3 ensemble, and the
paper's optimiser (SGD lr 0.1, momentum 0.9, weight decay 1e-4).

A *step-budget* profile (``validate_every`` and ``max_steps`` set; :attr:`Profile.converges`) trains
``max_steps`` steps in rounds of ``validate_every``; ``schedule`` (``bench3d2d.engine.schedules``) and
``warmup`` shape the learning rate over those steps; validations are made from ``validate_from`` x
``max_steps`` on, and only those from ``select_from`` x ``max_steps`` on may enter the top-k; a run whose
validation score has never left 0 by ``fail_at`` x ``max_steps`` stops as a failed fit. With ``patience``
(and optionally ``min_steps``, ``min_delta``) it also stops early on a validation plateau.

``standard`` is a step-budget profile without a plateau stop: 400 steps, a 5 % warmup, the peak learning
rate, and a linear decay to 0 over the last quarter (``wsd``), the top-3 chosen from the validations of
that last quarter, on the quick synthetic data at depth 96
(where ReSensNet and the FPB net differ), in float32; its budget comes from the learning curves
(``docs/training.md``). The optimiser fields of every profile are the paper's; the run's recipe set
(:mod:`bench3d2d.engine.recipes`) applies over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from bench3d2d.engine.schedules import check_schedule


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
    schedule: str = "constant"
    warmup: float = 0.0
    cooldown: float = 0.25
    validate_from: float = 0.0
    select_from: float = 0.0
    fail_at: float | None = None

    def __post_init__(self) -> None:
        check_schedule(self.schedule)
        if not 0.0 < float(self.cooldown) <= 1.0:
            raise ValueError(f"profile {self.name!r}: cooldown is a fraction of the steps in (0, 1]")
        if not 0.0 <= float(self.warmup) < 1.0:
            raise ValueError(
                f"profile {self.name!r}: warmup is a fraction of the steps in [0, 1), not {self.warmup}"
            )
        if self.converges:
            self._check_plateau()
            self._check_budget_fractions()
        elif self.validate_from or self.select_from or self.fail_at is not None:
            raise ValueError(
                f"profile {self.name!r}: validate_from, select_from and fail_at need a step budget "
                "(validate_every and max_steps)"
            )
        elif (self.repeats is None) == (self.steps_per_round is None):
            raise ValueError(f"profile {self.name!r}: give exactly one of repeats and steps_per_round")
        if self.rounds < 1 or self.top_k < 1:
            raise ValueError(f"profile {self.name!r}: rounds and top_k must be >= 1")

    @property
    def converges(self) -> bool:
        """Whether the fit counts steps (``validate_every`` and ``max_steps``, optionally a plateau stop with
        ``patience``) instead of ``rounds``."""
        return (
            self.patience is not None
            or self.validate_every is not None
            or self.max_steps is not None
            or bool(self.min_steps)
            or bool(self.min_delta)
        )

    def _check_plateau(self) -> None:
        """Step mode: a round every ``validate_every`` steps, at most ``max_steps``, and a plateau stop when
        ``patience`` is set; ``rounds`` is derived (the most rounds, ⌈max_steps / validate_every⌉)."""
        name = self.name
        if self.validate_every is None or self.max_steps is None:
            raise ValueError(
                f"profile {name!r}: a step budget needs validate_every and max_steps (both); "
                "a plateau stop needs patience too"
            )
        if self.patience is None and (self.min_steps or self.min_delta):
            raise ValueError(
                f"profile {name!r}: min_steps and min_delta belong to a plateau stop: give patience too, "
                "or leave them out for a fixed step budget"
            )
        if self.repeats is not None or self.steps_per_round is not None:
            raise ValueError(
                f"profile {name!r}: repeats/steps_per_round are for round-based profiles; "
                "a plateau profile validates every validate_every steps"
            )
        if (
            int(self.validate_every) < 1
            or int(1 if self.patience is None else self.patience) < 1
            or self.min_delta < 0
        ):
            raise ValueError(f"profile {name!r}: validate_every and patience must be >= 1, min_delta >= 0")
        if not 0 <= int(self.min_steps) <= int(self.max_steps) or int(self.max_steps) < 1:
            raise ValueError(
                f"profile {name!r}: need 0 <= min_steps <= max_steps and max_steps >= 1 "
                f"(got min_steps {self.min_steps}, max_steps {self.max_steps})"
            )
        object.__setattr__(self, "rounds", -(-int(self.max_steps) // int(self.validate_every)))

    def _check_budget_fractions(self) -> None:
        """``validate_from``, ``select_from`` in [0, 1], ``fail_at`` in (0, 1]: fractions of max_steps."""
        for key in ("validate_from", "select_from"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ValueError(f"profile {self.name!r}: {key} is a fraction of max_steps in [0, 1]")
        if self.fail_at is not None and not 0.0 < float(self.fail_at) <= 1.0:
            raise ValueError(f"profile {self.name!r}: fail_at is a fraction of max_steps in (0, 1]")

    @property
    def plateau(self) -> bool:
        """Whether a step-budget fit may stop early on a validation plateau (``patience`` set)."""
        return self.converges and self.patience is not None

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
        for key in (
            "lr",
            "weight_decay",
            "momentum",
            "min_delta",
            "warmup",
            "cooldown",
            "validate_from",
            "select_from",
        ):
            if key in changes:
                changes[key] = float(changes[key])
        for key in ("validate_every", "patience", "min_steps", "max_steps"):
            if changes.get(key) is not None:
                changes[key] = int(changes[key])
        if changes.get("fail_at") is not None:
            changes["fail_at"] = float(changes["fail_at"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (recorded with every run, hashed into run ids and SSL cache keys).

        The step-budget fields appear only in step-budget profiles, and a field added after the form was
        fixed (not in :data:`HASHED_FIELDS`) only when it differs from its default, so that adding a field
        never changes the form (nor the run ids) of an existing profile."""
        out = asdict(self)
        for f in fields(self):
            if f.name not in HASHED_FIELDS and getattr(self, f.name) == _default(f):
                del out[f.name]
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

#: The schedule and step-budget fields added with learning-rate schedules (docs/training.md).
SCHEDULE_FIELDS = ("schedule", "warmup", "cooldown", "validate_from", "select_from", "fail_at")

#: The fields :meth:`Profile.to_dict` always writes (the form run ids were made from before schedules);
#: any later field is written only where it differs from its default. Never add a name here.
HASHED_FIELDS = frozenset(
    (
        "name",
        "depth",
        "crop",
        "batch_size",
        "rounds",
        "repeats",
        "steps_per_round",
        "min_steps_per_round",
        "max_steps_per_round",
        "top_k",
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "betas",
        "data_size",
        "amp",
        "channels_last",
        "eval_batch",
        "description",
        "extra",
        *PLATEAU_FIELDS,
    )
)


def _default(f: Any) -> Any:
    """The default value of a dataclass field (``MISSING`` when it has none)."""
    return f.default_factory() if callable(f.default_factory) else f.default


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
    *SCHEDULE_FIELDS,
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
    rounds=1,  # derived: ⌈max_steps / validate_every⌉ rounds
    validate_every=10,
    max_steps=400,
    schedule="wsd",
    warmup=0.05,
    cooldown=0.25,
    validate_from=0.75,
    select_from=0.75,
    fail_at=0.5,
    top_k=3,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    data_size="quick",
    amp=False,
    eval_batch=4,
    description="Converged runs on the quick synthetic data (the budget comes from learning curves, see "
    "docs/training.md): depth 96 (the data's own depth; ReSensNet differs from the FPB net there), crops "
    "8 x 32, batch 4, float32, a fixed budget of 400 steps: 5 % linear warmup, the peak learning rate, then "
    "a linear decay to 0 over the last quarter (wsd), no early stop; validation every 10 steps over that "
    "last quarter, the top-3 of those ensembled; "
    "a run still at validation Dice 0 at half the budget stops as a failed fit.",
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
