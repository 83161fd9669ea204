"""Training recipes as data: which optimiser settings a model trains with, by named recipe set.

A *recipe* is the part of the training settings that belongs to a model rather than to the
benchmark: optimiser, learning rate, momentum, Adam betas, weight decay and (where a recipe gives
one) the segmentation batch size. It sits between the profile and the per-run overrides::

    profile  <  recipe  <  hparams        (later wins)

Three recipe sets (``RECIPE_SETS``):

* ``common`` — the paper's protocol for every model (SGD lr 0.1, momentum 0.9, weight decay 1e-4),
  as Morano et al. trained all their networks;
* ``official`` — each model's published optimiser, from its registration's ``defaults``:
  ``defaults["official"]`` when present, else the recipe keys given directly in ``defaults`` (a
  third-party model's own settings). Only the optimiser keys of an ``official`` entry are applied
  (``OFFICIAL_KEYS``); its batch size, iteration count and loss belong to the published input size and
  schedule, which the benchmark does not adopt, and are listed under ``not_applied``. A model with no
  official settings trains with ``common``, and the resolved recipe says so;
* ``tuned`` — the table shipped with the library (``tuned_recipes.json`` next to this module,
  produced by the equal-budget tuning), with the user's own tables (``bench3d2d tune
  --write-recipes``; ``bench3d2d run --recipes FILE``) layered over it, the last given winning; a
  model without an entry (or with an empty one) falls back to ``official`` (and from there possibly
  to ``common``), and the resolved recipe says so.

:func:`resolve_recipe` returns a :class:`Recipe` (values plus provenance); :func:`apply_recipe`
applies it to a :class:`~bench3d2d.engine.profiles.Profile`. See ``docs/training.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bench3d2d.engine.profiles import Profile, get_profile
from bench3d2d.models import model_info
from bench3d2d.results import SHIPPED_TABLE, recipe_label

__all__ = [
    "COMMON",
    "OFFICIAL_KEYS",
    "RECIPE_KEYS",
    "RECIPE_SETS",
    "SHIPPED_TABLE",
    "TUNED_FILE",
    "Recipe",
    "RecipeError",
    "apply_recipe",
    "load_tuned",
    "recipe_label",
    "resolve_recipe",
    "run_profile",
    "tuned_studies",
]

#: The named recipe sets, in fallback order from the last: tuned -> official -> common.
RECIPE_SETS = ("common", "official", "tuned")
#: Keys a recipe may set (anything else in a table is an error; in registry metadata it is ignored).
RECIPE_KEYS = ("optimizer", "lr", "momentum", "betas", "weight_decay", "batch_size")
#: Keys taken from a registration's ``defaults["official"]`` (the published optimiser).
OFFICIAL_KEYS = ("optimizer", "lr", "momentum", "betas", "weight_decay")
#: The paper's protocol (docs/protocol.md §6), the same for every model.
COMMON: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
#: The shipped tuned table (inside the package).
TUNED_FILE = "tuned_recipes.json"
TUNED_FORMAT = "bench3d2d-tuned-recipes/1"
#: How a recipe from the shipped table names its table (a user's table is named by its file name).


class RecipeError(ValueError):
    """An unknown recipe set, or a tuned table that is not valid (the message names the file)."""


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: the ``values`` applied to the profile, the ``recipe_set`` asked for, and
    ``source``, the set the values came from (differs from ``recipe_set`` after a fallback, explained
    by ``note``). ``not_applied``: official settings the benchmark does not adopt (e.g. batch size).
    ``table``: for a tuned recipe, the table its values came from (:data:`SHIPPED_TABLE` or the file
    name of a user's table)."""

    model: str
    recipe_set: str
    source: str
    values: Mapping[str, Any]
    note: str = ""
    not_applied: Mapping[str, Any] = field(default_factory=dict)
    table: str = ""

    def describe(self) -> str:
        """What the run trains with, in words: ``tuned (my_recipes.json)``, ``official (no tuned entry)``."""
        return recipe_label(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (written into ``result.json`` as ``recipe``)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()}
        return {
            "set": self.recipe_set,
            "source": self.source,
            "model": self.model,
            "values": values,
            "note": self.note,
            "not_applied": dict(self.not_applied),
            "table": self.table,
        }


def _clean(values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The recipe keys of ``values`` (in ``RECIPE_KEYS`` order), betas as a tuple."""
    out = {k: values[k] for k in RECIPE_KEYS if k in keys and k in values}
    if "betas" in out:
        out["betas"] = tuple(float(b) for b in out["betas"])
    return out


def _official(model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's published optimiser from its registry ``defaults`` and the settings left out."""
    defaults = dict(model_info(model).defaults)
    official = defaults.get("official")
    if isinstance(official, Mapping):
        applied = _clean(official, OFFICIAL_KEYS)
        return applied, {k: v for k, v in official.items() if k not in applied}
    return _clean(defaults, RECIPE_KEYS), {}


def _shipped_text() -> str | None:
    """The text of the shipped table, or None when the package has none."""
    resource = resources.files("bench3d2d.engine").joinpath(TUNED_FILE)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _read_table(path: Path | str | None, must_exist: bool = False) -> tuple[dict[str, Any], str]:
    """A table file's JSON object and how to name it (``path``; None: the shipped table). A missing
    file is an empty table, or, with ``must_exist``, a :class:`RecipeError`."""
    if path is None:
        text, where = _shipped_text(), f"bench3d2d/engine/{TUNED_FILE}"
    else:
        where = str(path)
        text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else None
    if text is None:
        if must_exist:
            raise RecipeError(f"recipe table {where}: no such file (write one with `bench3d2d tune "
                              "--write-recipes FILE`)")  # fmt: skip
        return {"format": TUNED_FORMAT, "recipes": {}}, where
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecipeError(f"tuned recipe table {where} is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != TUNED_FORMAT
        or not isinstance(data.get("recipes", {}), dict)
    ):
        raise RecipeError(
            f"tuned recipe table {where}: expected an object with format {TUNED_FORMAT!r} "
            "and a 'recipes' object {model: {setting: value}}"
        )
    return data, where


def load_tuned(path: Path | str | None = None, must_exist: bool = False) -> dict[str, dict[str, Any]]:
    """The tuned table ``{model: recipe values}`` (default: the file shipped with the library).

    The file is JSON ``{"format": "bench3d2d-tuned-recipes/1", "recipes": {model: {key: value}}}``,
    keys from ``RECIPE_KEYS`` (an ``"_study"`` key per entry, e.g. the tuning summary, is allowed and
    not applied). A missing file is an empty table (with ``must_exist``, an error); a malformed one
    raises :class:`RecipeError`.
    """
    data, where = _read_table(path, must_exist)
    table: dict[str, dict[str, Any]] = {}
    for model, entry in data.get("recipes", {}).items():
        if not isinstance(entry, dict):
            raise RecipeError(f"tuned recipe table {where}: entry {model!r} is not an object")
        unknown = set(entry) - set(RECIPE_KEYS) - {"_study"}
        if unknown:
            raise RecipeError(
                f"tuned recipe table {where}: entry {model!r} has unknown setting(s) "
                f"{sorted(unknown)}; allowed: {', '.join(RECIPE_KEYS)}"
            )
        table[str(model)] = _clean(entry, RECIPE_KEYS)
    return table


def tuned_studies(path: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """``{model: its "_study" record}`` of a tuned table (default: the shipped one): how each entry was
    tuned (trials, profile, max_steps, dataset, fraction, seed, search space, ...)."""
    data, _ = _read_table(path)
    recipes = data.get("recipes", {})
    return {str(m): dict(e["_study"]) for m, e in recipes.items() if isinstance(e.get("_study"), dict)}


def _tuned_entry(
    model: str, tuned: Mapping[str, Mapping[str, Any]] | None, tables: Sequence[Path | str]
) -> tuple[dict[str, Any], str]:
    """The model's tuned values and the table they came from: the last of ``tables`` that has an entry,
    else the shipped table (``tuned`` replaces the shipped table)."""
    for path in reversed(list(tables)):
        values = _clean(load_tuned(path, must_exist=True).get(model) or {}, RECIPE_KEYS)
        if values:
            return values, Path(path).name
    table = load_tuned() if tuned is None else tuned
    return _clean(table.get(model) or {}, RECIPE_KEYS), SHIPPED_TABLE


def resolve_recipe(
    model: str,
    recipe_set: str = "common",
    *,
    tuned: Mapping[str, Mapping[str, Any]] | None = None,
    tables: Sequence[Path | str] = (),
) -> Recipe:
    """The recipe of ``model`` under ``recipe_set`` (``common``, ``official`` or ``tuned``), with its
    provenance. ``tables``: the user's tuned tables, layered over the shipped one (the last wins; a
    missing file is an error). ``tuned`` replaces the shipped table (tests, a table being made). An
    unknown model raises the registry's error; an unknown set raises :class:`RecipeError`."""
    if recipe_set not in RECIPE_SETS:
        raise RecipeError(f"unknown recipe set {recipe_set!r}; choose one of {', '.join(RECIPE_SETS)}")
    model_info(model)  # an unknown model fails here
    if recipe_set == "tuned":
        values, table_name = _tuned_entry(model, tuned, tables)
        if values:
            return Recipe(model, "tuned", "tuned", _complete(values), table=table_name)
        fallback = resolve_recipe(model, "official")
        where = ", ".join([SHIPPED_TABLE, *(Path(t).name for t in tables)])
        note = f"no tuned entry for {model} ({where}); " + (fallback.note or "its official recipe is used")
        return Recipe(model, "tuned", fallback.source, fallback.values, note, fallback.not_applied)
    if recipe_set == "official":
        values, left_out = _official(model)
        if values:
            return Recipe(model, "official", "official", _complete(values), "", left_out)
        return Recipe(
            model,
            "official",
            "common",
            dict(COMMON),
            f"{model} registers no official optimiser; the common recipe is used",
            left_out,
        )
    return Recipe(model, "common", "common", dict(COMMON))


def _complete(values: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe with every optimiser setting: what an SGD recipe leaves out is the common recipe's;
    what an Adam/AdamW recipe leaves out is the optimiser's own default (betas (0.9, 0.999), no weight
    decay), not the paper's SGD values."""
    if str(values.get("optimizer", "sgd")).lower() == "sgd":
        return {**COMMON, **values}
    return {"betas": (0.9, 0.999), "weight_decay": 0.0, **values}


def apply_recipe(profile: Profile, recipe: Recipe | Mapping[str, Any]) -> Profile:
    """``profile`` with the recipe's values; a recipe ``batch_size`` sets the segmentation batch only
    (SSL reconstruction keeps the profile's)."""
    values = dict(recipe.values if isinstance(recipe, Recipe) else recipe)
    if "batch_size" in values and not isinstance(values["batch_size"], Mapping):
        values["batch_size"] = {**dict(profile.batch_size), "segmentation": int(values["batch_size"])}
    return profile.with_overrides(values)


def run_profile(
    profile: Profile | str,
    model: str,
    recipe_set: str = "common",
    hparams: Mapping[str, Any] | None = None,
    tables: Sequence[Path | str] = (),
) -> Profile:
    """The profile one run trains with: ``profile`` < the model's recipe of ``recipe_set`` (with the
    user's ``tables`` over the shipped one) < ``hparams``."""
    recipe = resolve_recipe(model, recipe_set, tables=tables)
    return apply_recipe(get_profile(profile), recipe).with_overrides(hparams)
