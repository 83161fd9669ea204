"""What a sweep can know is wrong before it spends any compute (private; ``run --dry-run`` prints it).

:func:`plan_problems` checks a plan's hyper-parameter overrides (unknown keys with a did-you-mean,
settings the profile refuses: an incomplete plateau set, a wrong type) and its datasets the way the
runs will read them (:func:`bench3d2d.data.check.check_dataset` on the headers: columns, rows, files,
patients for the split, annotations, and the images each planned SSL pre-training needs). Each
problem is one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench3d2d.harness._plan import Plan
from bench3d2d.harness._spec import canonical_json

__all__ = ["DatasetRoles", "dataset_roles", "hparam_problems", "plan_problems"]

_TEST_SUFFIX = ":test"


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def hparam_problems(model: str, profile: str, recipe: str, hparams: Mapping[str, Any]) -> list[str]:
    """Problems of one run's overrides: keys the profile does not know (did-you-mean), else the error
    the profile gives when built with them (the same build the run makes), one line each."""
    from bench3d2d.engine.profiles import OVERRIDABLE
    from bench3d2d.engine.recipes import run_profile

    unknown = [k for k in hparams if k not in OVERRIDABLE]
    if unknown:
        return [
            f"model {model!r}: unknown hyper-parameter {k!r}"
            + (_did_you_mean(k, OVERRIDABLE) or f" (settable: {', '.join(OVERRIDABLE)})")
            for k in unknown
        ]
    try:
        run_profile(profile, model, recipe, hparams)
    except (ValueError, TypeError) as exc:
        return [f"model {model!r} with {dict(hparams)} on profile {profile!r}: {exc}"]
    return []


@dataclass
class DatasetRoles:
    """How a plan uses one dataset: trained on (needs a split and masks), tested, or pre-trained on
    (needs a split and the ``modalities``)."""

    train: bool = False
    test: bool = False
    modalities: set[str] = field(default_factory=set)

    @property
    def split(self) -> bool:
        """Whether the dataset is split patient-wise (training or pre-training)."""
        return self.train or bool(self.modalities)


def dataset_roles(plan: Plan) -> dict[str, DatasetRoles]:
    """Every dataset of the plan with its roles."""
    roles: dict[str, DatasetRoles] = {}
    for spec in plan.runs:
        roles.setdefault(spec.train_dataset, DatasetRoles()).train = True
        for name in spec.test_sets:
            roles.setdefault(name.removesuffix(_TEST_SUFFIX), DatasetRoles()).test = True
    for pre in plan.pretrainings:
        roles.setdefault(pre.source, DatasetRoles()).modalities.add(pre.modality)
    return roles


def _dataset_problems(name: str, role: DatasetRoles, size: str) -> list[str]:
    from bench3d2d.data.check import CheckOptions, check_dataset

    report = check_dataset(name, CheckOptions(size=size, modalities=tuple(sorted(role.modalities)),
                                              load_scans=False))  # fmt: skip
    problems = report.problems
    if not role.split:
        problems = [p for p in problems if "the patient-wise split needs" not in p]
    if not (role.train or role.test):
        problems = [p for p in problems if "nothing to train or test on" not in p]
    return problems


def plan_problems(plan: Plan) -> list[str]:
    """Every problem of the plan's overrides and datasets that is known before anything runs."""
    from bench3d2d.engine.profiles import get_profile

    problems: list[str] = []
    seen: set[str] = set()
    for spec in plan.runs:
        key = canonical_json({"m": spec.model, "p": spec.profile, "r": spec.recipe, "h": dict(spec.hparams)})
        if key not in seen:
            seen.add(key)
            problems += hparam_problems(spec.model, spec.profile, spec.recipe, spec.hparams)
    sizes = {get_profile(s.profile).data_size for s in plan.runs} or {"quick"}
    for name, role in dataset_roles(plan).items():
        for size in sorted(sizes):
            problems += _dataset_problems(name, role, size)
    return list(dict.fromkeys(problems))
