"""Benchmark definitions (data, not code paths) and sweep plan expansion (private; see ``sweep``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench3d2d._defaults import DEFAULT_PROFILE, DEFAULT_RECIPE
from bench3d2d.harness._spec import PRETRAIN_CHOICES, PretrainSpec, RunSpec, normalise_fraction


@dataclass(frozen=True)
class Benchmark:
    """One experiment of the protocol: fit on a dataset, test on some sets, at some fractions.

    ``test_sets`` entries are dataset names; ``"name:test"`` is the test part of that dataset's
    split, a bare name the whole dataset. ``fractions`` limits the label fractions this benchmark
    runs at (None: any requested one). ``pretrain_source`` is the unlabelled dataset SSL
    pre-training reconstructs from (None: no SSL variants for this benchmark).
    """

    name: str
    train_dataset: str
    test_sets: tuple[str, ...]
    fractions: tuple[float, ...] | None = None
    pretrain_source: str | None = None
    description: str = ""


#: The paper's protocol (docs/protocol.md §1.2) on the embedded synthetic datasets.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            name="ga",
            train_dataset="synthetic-ga-s-1",
            test_sets=("synthetic-ga-s-1:test", "synthetic-ga-s-2", "synthetic-ga-m-s"),
            fractions=None,
            pretrain_source="synthetic-ga-m",
            description="GA: fit on GA-S-1, test on GA-S-1 (test split), GA-S-2 and GA-M-S (whole)",
        ),
        Benchmark(
            name="rpd",
            train_dataset="synthetic-rpd",
            test_sets=("synthetic-rpd:test",),
            fractions=(20.0, 100.0),
            pretrain_source="synthetic-ga-m",
            description="RPD: fit and test on RPD-S, 20 and 100 % labels only",
        ),
    )
}

DEFAULT_DATASETS = ("ga", "rpd")
DEFAULT_FRACTIONS = (5.0, 10.0, 20.0, 100.0)
#: SSL variants run for models whose registry tags include this one (paper: FPB net, Lachinov).
SSL_TAG = "ssl"


def split_list(text: str | Sequence[str] | None) -> list[str]:
    """``"a,b c"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        out.extend(tok for tok in str(item).replace(",", " ").split() if tok)
    return out


def _texts(values: str | Iterable[Any] | None) -> str | list[str] | None:
    return values if isinstance(values, (str, type(None))) else [str(v) for v in values]


def parse_fractions(text: str | Sequence[str] | None) -> tuple[float, ...]:
    """Label fractions in percent, e.g. ``"5,10,20,100"`` (a trailing ``%`` is allowed)."""
    values = split_list(text)
    if not values:
        return DEFAULT_FRACTIONS
    return tuple(dict.fromkeys(normalise_fraction(v) for v in values))


#: Seeds of a sweep when none are given: three, so that every entry shows its seed spread.
DEFAULT_SEEDS = (0, 1, 2)


def parse_seeds(text: str | Sequence[str] | None) -> tuple[int, ...]:
    """Seeds, e.g. ``"0,1,2"`` or a range ``"0-4"``; none given: :data:`DEFAULT_SEEDS`."""
    out: list[int] = []
    for tok in split_list(text) or [str(s) for s in DEFAULT_SEEDS]:
        try:
            if "-" in tok.lstrip("-"):
                lo, hi = tok.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(tok))
        except ValueError:
            raise ValueError(f"seed {tok!r} is not an integer or a range like 0-4") from None
    return tuple(dict.fromkeys(out))


def parse_pretrain(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Pre-training variants among ``none``, ``slo``, ``faf``."""
    values = [v.lower() for v in split_list(text)] or list(PRETRAIN_CHOICES)
    bad = [v for v in values if v not in PRETRAIN_CHOICES]
    if bad:
        raise ValueError(f"unknown pre-training {', '.join(bad)}; choose among {', '.join(PRETRAIN_CHOICES)}")
    return tuple(dict.fromkeys(values))


def resolve_models(patterns: str | Sequence[str] | None) -> list[str]:
    """Model names from names, fnmatch wildcards or ``all``; an unmatched pattern is an error."""
    from bench3d2d.models import list_models, model_info

    tokens = split_list(patterns) or ["all"]
    names: list[str] = []
    for tok in tokens:
        if tok == "all":
            names.extend(list_models())
        elif any(ch in tok for ch in "*?["):
            matched = list_models(tok)
            if not matched:
                raise LookupError(
                    f"no registered model matches {tok!r}; registered: {', '.join(list_models())}"
                )
            names.extend(matched)
        else:
            names.append(model_info(tok).name)  # unknown names raise with close matches
    return list(dict.fromkeys(names))


def dataset_identity_name(name: str) -> str:
    """How a plan names a dataset: a registered name as it is, an existing path resolved (so that the
    same data gets the same run ids, pre-training keys and records from any working folder)."""
    from bench3d2d.data.registry import list_datasets

    if name in list_datasets() or not Path(name).expanduser().exists():
        return name
    return str(Path(name).expanduser().resolve())


def resolve_benchmarks(tokens: str | Sequence[str] | None) -> list[Benchmark]:
    """Benchmark groups by name (``ga``, ``rpd``), or a registered dataset / manifest path.

    A dataset or path becomes its own benchmark: fit on its train part, test on its test part,
    any fraction, no SSL variants (give :func:`expand_plan` a ``PlanOptions(pretrain_source=...)`` for those).
    """
    out: list[Benchmark] = []
    for tok in split_list(tokens) or list(DEFAULT_DATASETS):
        if tok in BENCHMARKS:
            out.append(BENCHMARKS[tok])
            continue
        from bench3d2d.data.registry import dataset_info, list_datasets

        if tok in list_datasets():
            name = tok
        elif Path(tok).expanduser().exists():
            name = dataset_identity_name(tok)
        else:
            try:
                dataset_info(tok)
            except LookupError as exc:
                raise LookupError(f"{exc}; benchmark groups: {', '.join(BENCHMARKS)}") from None
            name = tok
        out.append(Benchmark(name=tok, train_dataset=name, test_sets=(f"{name}:test",)))
    return list({b.name: b for b in out}.values())


@dataclass
class Plan:
    """A sweep: its runs and the SSL pre-trainings they depend on.

    ``recipes``: each model's resolved recipe (:class:`~bench3d2d.engine.recipes.Recipe`), what its
    runs actually train with. ``untuned``: models planned under the ``tuned`` set that have no tuned
    entry (they train with their official or the common recipe; ``bench3d2d run`` refuses them
    unless ``--allow-untuned``).
    """

    runs: list[RunSpec]
    pretrainings: list[PretrainSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recipes: dict[str, Any] = field(default_factory=dict)
    untuned: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)


HParamsFor = Callable[[str, Benchmark, float, str], Mapping[str, Any]]


@dataclass(frozen=True)
class PlanOptions:
    """How a plan is filled in beyond its grid of models x fractions x datasets x pre-training x seeds.

    ``hparams_for(model, benchmark, fraction, profile)`` returns hyper-parameter overrides of a
    run (None: the registry's and the profile's defaults). ``pretrain_source`` is the dataset SSL
    pre-training reconstructs from for every benchmark (None: each benchmark's own).
    ``ssl_all_models`` plans SSL variants for every model, not only those tagged ``ssl``.
    ``recipe`` is the recipe set every run trains with (``common``, ``official``, ``tuned``:
    :mod:`bench3d2d.engine.recipes`); ``recipe_tables`` are the user's tuned tables (``bench3d2d tune
    --write-recipes``), layered over the shipped one, the last winning.
    """

    hparams_for: HParamsFor | None = None
    pretrain_source: str | None = None
    ssl_all_models: bool = False
    recipe: str = DEFAULT_RECIPE
    recipe_tables: tuple[str, ...] = ()


def expand_plan(
    models: str | Sequence[str] | None = None,
    fractions: str | Iterable[float | str] | None = None,
    datasets: str | Sequence[str] | None = None,
    pretrain: str | Sequence[str] | None = None,
    seeds: str | Iterable[int | str] | None = None,
    profile: str = DEFAULT_PROFILE,
    options: PlanOptions | None = None,
) -> Plan:
    """Every (benchmark, model, pre-training, fraction, seed) run, in a stable order.

    Each list argument takes a comma-separated string (``"5,10"``) or a sequence (``[5, 10]``);
    None is the default (all models, the paper's fractions and benchmarks, every pre-training,
    seed 0). SSL variants (``slo``, ``faf``) are planned for models tagged ``ssl`` in the registry
    (all models with ``options.ssl_all_models``) and for benchmarks with a pre-training source.
    """
    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.engine.recipes import RECIPE_SETS
    from bench3d2d.models import model_info

    opts = options or PlanOptions()
    get_profile(profile)  # unknown profile: clear error before anything runs
    if opts.recipe not in RECIPE_SETS:
        raise ValueError(f"unknown recipe set {opts.recipe!r}; choose one of {', '.join(RECIPE_SETS)}")
    tables = tuple(str(Path(t).expanduser().resolve()) for t in opts.recipe_tables)
    if tables and opts.recipe != "tuned":
        raise ValueError(
            f"--recipes tables hold tuned recipes; they apply to --recipe tuned, not {opts.recipe}"
        )
    model_names = resolve_models(models)
    plan = Plan(runs=[])
    _resolve_recipes(plan, model_names, opts.recipe, tables)
    fracs = parse_fractions(_texts(fractions))
    seed_list = parse_seeds(_texts(seeds))
    variants = parse_pretrain(pretrain)
    benchmarks = resolve_benchmarks(datasets)
    pretrain_keys: dict[str, PretrainSpec] = {}
    own_source = dataset_identity_name(opts.pretrain_source) if opts.pretrain_source else None
    for bench in benchmarks:
        source = own_source or bench.pretrain_source
        bench_fracs = [f for f in fracs if bench.fractions is None or f in bench.fractions]
        if not bench_fracs:
            plan.notes.append(
                f"benchmark {bench.name}: none of the fractions {', '.join(f'{f:g}' for f in fracs)} "
                f"is among its own ({', '.join(f'{f:g}' for f in bench.fractions or ())}); skipped"
            )
            continue
        for model in model_names:
            tags = model_info(model).tags
            for variant in variants:
                if variant != "none":
                    if not (opts.ssl_all_models or SSL_TAG in tags):
                        continue
                    if source is None:
                        plan.notes.append(
                            f"benchmark {bench.name}: no pre-training source, {variant} skipped"
                        )
                        continue
                for frac in bench_fracs:
                    hp = dict(opts.hparams_for(model, bench, frac, profile)) if opts.hparams_for else {}
                    for seed in seed_list:
                        spec = RunSpec(
                            model=model,
                            train_dataset=bench.train_dataset,
                            test_sets=bench.test_sets,
                            fraction=frac,
                            seed=seed,
                            profile=profile,
                            pretrain=variant,
                            pretrain_source=source if variant != "none" else None,
                            hparams=hp,
                            benchmark=bench.name,
                            recipe=opts.recipe,
                            recipe_tables=tables,
                        )
                        plan.runs.append(spec)
                        pre = spec.pretrain_spec()
                        if pre is not None:
                            pretrain_keys.setdefault(pre.key, pre)
    plan.runs = list({s.run_id: s for s in plan.runs}.values())
    plan.pretrainings = list(pretrain_keys.values())
    plan.notes = list(dict.fromkeys(plan.notes))
    return plan


def _resolve_recipes(plan: Plan, models: list[str], recipe_set: str, tables: tuple[str, ...]) -> None:
    """Fill ``plan.recipes`` (what each model trains with) and ``plan.untuned``, with a note for each
    model that has no tuned entry under the ``tuned`` set (a missing table file raises here)."""
    from bench3d2d.engine.recipes import resolve_recipe

    for model in models:
        recipe = resolve_recipe(model, recipe_set, tables=tables)
        plan.recipes[model] = recipe
        if recipe_set == "tuned" and recipe.source != "tuned":
            plan.untuned.append(model)
            plan.notes.append(f"{model}: {recipe.note}; its runs train with {recipe.describe()}")


def contract_problems(plan: Plan) -> list[str]:
    """One line per planned model that breaks the tensor contract at its runs' profile's depth and crop
    (:func:`bench3d2d.models.check_contract`), checked before the first run so that a broken model
    fails in seconds, naming the rule, instead of inside training."""
    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.models import ContractError, check_contract

    lines = []
    for model, profile in dict.fromkeys((s.model, s.profile) for s in plan.runs):
        prof = get_profile(profile)
        try:
            check_contract(model, *prof.crop, prof.depth)
        except ContractError as exc:
            lines.append(
                f"{exc} (profile {prof.name}: depth {prof.depth}, crop {prof.crop[0]} x {prof.crop[1]})"
            )
    return lines
