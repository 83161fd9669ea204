"""Run and pre-training specifications with stable ids (private; use ``bench3d2d.harness.sweep``)."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench3d2d.data.splits import parse_fraction

#: Bumped whenever the meaning of a spec field changes, so old and new runs never share an id.
#: Schema 2: the recipe set (and a fingerprint of the model's resolved recipe) is part of the id.
SCHEMA_VERSION = 2
PRETRAIN_CHOICES = ("none", "slo", "faf")


def _plain(value: Any) -> Any:
    """JSON-friendly copy: numpy scalars to Python, tuples to lists, dict keys sorted later by dumps."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite number {value!r} cannot be part of a run specification")
    return value


def canonical_json(obj: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: the same content always gives the same text."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def short_hash(text: str) -> str:
    """First 12 hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def profile_fingerprint(name: str) -> str:
    """Short hash of a named profile's full settings, so that editing a profile changes run ids."""
    from bench3d2d.engine.profiles import get_profile

    return short_hash(canonical_json(get_profile(name).to_dict()))[:8]


def recipe_fingerprint(model: str, recipe: str, tables: tuple[str, ...] = ()) -> str:
    """Short hash of ``model``'s resolved recipe of set ``recipe`` (with the user's tuned ``tables``
    over the shipped one): editing the tuned table or a model's official settings changes run ids, as
    editing a profile does; a user's table changes only the ids of the models it holds. The common
    recipe is the same for every model, so it is hashed without looking the model up."""
    from bench3d2d.engine.recipes import COMMON, resolve_recipe

    resolved = COMMON if recipe == "common" else resolve_recipe(model, recipe, tables=tables).values
    values = dict(resolved)
    return short_hash(canonical_json({"set": recipe, "values": values}))[:8]


def _fill_fingerprints(spec: RunSpec | PretrainSpec) -> None:
    """Set a frozen spec's ``profile_hash`` and ``recipe_hash`` where they were not given."""
    if not spec.profile_hash:
        object.__setattr__(spec, "profile_hash", profile_fingerprint(spec.profile))
    object.__setattr__(spec, "recipe_tables", tuple(str(t) for t in spec.recipe_tables))
    if not spec.recipe_hash:
        object.__setattr__(
            spec, "recipe_hash", recipe_fingerprint(spec.model, spec.recipe, spec.recipe_tables)
        )


def normalise_fraction(value: float | str) -> float:
    """A label fraction in percent (``5``, ``"12.5"``, ``"20%"``), as a float in (0, 100]."""
    return float(parse_fraction(value) * 100)


@dataclass(frozen=True)
class RunSpec:
    """One training run: everything that determines its result, hence its id.

    ``fraction`` is in percent (5, 10, 20, 100). ``test_sets`` name datasets; ``"name:test"``
    means the test part of that dataset's split, a bare name the whole dataset. ``hparams``
    holds only overrides of the model's registry defaults (empty: the defaults). ``recipe_tables``:
    the user's tuned tables over the shipped one; not part of the id (``recipe_hash`` covers the
    values they give), recorded in ``spec.json`` so that a worker resolves the same recipe.
    """

    model: str
    train_dataset: str
    test_sets: tuple[str, ...]
    fraction: float
    seed: int = 0
    profile: str = "smoke"
    pretrain: str = "none"
    pretrain_source: str | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)
    benchmark: str = ""
    profile_hash: str = ""
    recipe: str = "common"
    recipe_hash: str = ""
    recipe_tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _fill_fingerprints(self)
        object.__setattr__(self, "test_sets", tuple(str(t) for t in self.test_sets))
        object.__setattr__(self, "fraction", normalise_fraction(self.fraction))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "hparams", dict(_plain(dict(self.hparams))))
        if self.pretrain not in PRETRAIN_CHOICES:
            raise ValueError(f"pretrain must be one of {', '.join(PRETRAIN_CHOICES)}, not {self.pretrain!r}")
        if self.pretrain != "none" and not self.pretrain_source:
            raise ValueError(
                f"run of {self.model!r} with {self.pretrain} pre-training needs a pretrain_source"
            )
        if self.pretrain == "none" and self.pretrain_source is not None:
            object.__setattr__(self, "pretrain_source", None)

    def identity(self) -> dict[str, Any]:
        """The fields that define the run (``benchmark`` is a label, not part of the id)."""
        return {
            "schema": SCHEMA_VERSION,
            "model": self.model,
            "train_dataset": self.train_dataset,
            "test_sets": list(self.test_sets),
            "fraction": self.fraction,
            "seed": self.seed,
            "profile": self.profile,
            "profile_hash": self.profile_hash,
            "pretrain": self.pretrain,
            "pretrain_source": self.pretrain_source,
            "recipe": self.recipe,
            "recipe_hash": self.recipe_hash,
            "hparams": dict(self.hparams),
        }

    @property
    def run_id(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON identity."""
        return short_hash(canonical_json(self.identity()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with its id (as stored in ``spec.json``)."""
        tables = {"recipe_tables": list(self.recipe_tables)} if self.recipe_tables else {}
        return {**self.identity(), "benchmark": self.benchmark, "run_id": self.run_id, **tables}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`; rejects another schema version or a mismatching id."""
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise ValueError(f"run spec has schema {schema}, this bench3d2d reads schema {SCHEMA_VERSION}")
        try:
            spec = cls(
                model=data["model"],
                train_dataset=data["train_dataset"],
                test_sets=tuple(data["test_sets"]),
                fraction=data["fraction"],
                seed=data.get("seed", 0),
                profile=data.get("profile", "smoke"),
                pretrain=data.get("pretrain", "none"),
                pretrain_source=data.get("pretrain_source"),
                hparams=data.get("hparams") or {},
                benchmark=data.get("benchmark", ""),
                profile_hash=data.get("profile_hash", ""),
                recipe=data.get("recipe", "common"),
                recipe_hash=data.get("recipe_hash", ""),
                recipe_tables=tuple(data.get("recipe_tables") or ()),
            )
        except KeyError as exc:
            raise ValueError(f"run spec lacks the field {exc.args[0]!r}") from None
        if "run_id" in data and data["run_id"] != spec.run_id:
            raise ValueError(
                f"run spec says run_id {data['run_id']!r} but its content hashes to {spec.run_id!r}"
            )
        return spec

    def pretrain_spec(self) -> PretrainSpec | None:
        """The SSL pre-training this run depends on (None when trained from scratch)."""
        if self.pretrain == "none":
            return None
        return PretrainSpec(
            model=self.model,
            source=str(self.pretrain_source),
            modality=self.pretrain,
            profile=self.profile,
            seed=self.seed,
            profile_hash=self.profile_hash,
            recipe=self.recipe,
            recipe_hash=self.recipe_hash,
            recipe_tables=self.recipe_tables,
        )

    def label(self, recipe: str | None = None) -> str:
        """A short human-readable description; ``recipe``: what the run's recipe resolves to, in words
        (``Recipe.describe()``, e.g. ``official (no tuned entry)``), instead of the set's name."""
        pre = "scratch" if self.pretrain == "none" else f"ssl-{self.pretrain}"
        overrides = f" +{','.join(sorted(self.hparams))}" if self.hparams else ""
        return (
            f"{self.model} {pre} {self.train_dataset} {self.fraction:g}% seed {self.seed} "
            f"{recipe or self.recipe} recipe{overrides}"
        )


@dataclass(frozen=True)
class PretrainSpec:
    """One SSL pre-training (OCT -> SLO or inverted FAF), shared by every run that needs it."""

    model: str
    source: str
    modality: str
    profile: str
    seed: int = 0
    profile_hash: str = ""
    recipe: str = "common"
    recipe_hash: str = ""
    recipe_tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _fill_fingerprints(self)

    def to_dict(self) -> dict[str, Any]:
        """What ``RESULTS/pretrain/<key>/spec.json`` holds: the identity, the key, and the user's recipe
        tables when there are any (not part of the key: ``recipe_hash`` covers their values)."""
        tables = {"recipe_tables": list(self.recipe_tables)} if self.recipe_tables else {}
        return {**self.identity(), "key": self.key, **tables}

    def identity(self) -> dict[str, Any]:
        """The fields that define the pre-training (its optimiser comes from the recipe too)."""
        return {
            "schema": SCHEMA_VERSION,
            "model": self.model,
            "source": self.source,
            "modality": self.modality,
            "profile": self.profile,
            "profile_hash": self.profile_hash,
            "recipe": self.recipe,
            "recipe_hash": self.recipe_hash,
            "seed": int(self.seed),
        }

    @property
    def key(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON identity."""
        return short_hash(canonical_json(self.identity()))

    def label(self) -> str:
        """A short human-readable description."""
        return f"pretrain {self.model} {self.source}->{self.modality} seed {self.seed}"


# -- data fingerprints -------------------------------------------------------------------------------
#: Suffix of a test set that names the training dataset's own test split.
_TEST_SUFFIX = ":test"


def _data_size(profile: str, hparams: Mapping[str, Any] | None = None) -> str:
    from bench3d2d.engine.profiles import get_profile

    return get_profile(profile).with_overrides(dict(hparams or {})).data_size


def data_identity(
    datasets: Iterable[str], size: str, memo: dict[tuple[str, str], str] | None = None
) -> dict[str, Any] | None:
    """Fingerprints of the named datasets at one size preset, and one hash over them.

    ``{"datasets": {name: fingerprint}, "fingerprint": hash}``, where a dataset's fingerprint is
    :meth:`bench3d2d.data.records.Dataset.fingerprint` (synthetic: preset parameters, difficulty and
    generator version; manifest: its content and each file's size and modification time). None when
    a dataset is unknown to this process (a site backend's: then nothing is compared); a dataset that
    is known but cannot be read (a listed file deleted, a broken manifest) raises its error, so that
    change detection never gives up silently. Not part of the run id.
    """
    from bench3d2d.data import load_dataset

    memo = {} if memo is None else memo
    prints: dict[str, str] = {}
    for name in sorted({str(d).removesuffix(_TEST_SUFFIX) for d in datasets}):
        if (name, size) not in memo:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    memo[(name, size)] = load_dataset(name, size=size).fingerprint()
            except LookupError:  # a site backend's dataset this process does not know
                return None
        prints[name] = memo[(name, size)]
    return {"datasets": prints, "fingerprint": short_hash(canonical_json(prints))}


def run_data_identity(spec: RunSpec, memo: dict | None = None) -> dict[str, Any] | None:
    """The data a run uses: its training dataset, test sets and SSL pre-training source."""
    names = [spec.train_dataset, *spec.test_sets]
    if spec.pretrain_source:
        names.append(spec.pretrain_source)
    return data_identity(names, _data_size(spec.profile, spec.hparams), memo)


def pretrain_data_identity(pre: PretrainSpec, memo: dict | None = None) -> dict[str, Any] | None:
    """The data a pre-training uses: its source dataset."""
    return data_identity([pre.source], _data_size(pre.profile), memo)


def changed_datasets(
    recorded: Mapping[str, Any] | None, current: Mapping[str, Any] | None
) -> list[str] | None:
    """Names of the datasets whose fingerprint differs from the recorded one; None when unknown.

    Unknown: the result predates fingerprints, or the data cannot be loaded now; nothing is refused.
    """
    if not recorded or not current or "fingerprint" not in recorded:
        return None
    if recorded["fingerprint"] == current["fingerprint"]:
        return []
    old, new = dict(recorded.get("datasets") or {}), dict(current.get("datasets") or {})
    return sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n)) or ["(data)"]
