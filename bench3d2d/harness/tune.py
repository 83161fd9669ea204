"""Hyper-parameter tuning with Optuna: one study per (model, dataset, label fraction, profile).

The objective is the best validation Dice of a training run (the score checkpoint selection
uses); test sets are never looked at. Each validation is reported to the trial, and a
``MedianPruner`` stops runs that fall below the median of earlier trials at the same step, never
before :func:`first_judged_step` (a plateau profile's ``min_steps``, a step budget's first regular
validation: a flat start or a high learning rate is not a verdict). The
search space is the model's registry metadata (``model_info(name).search_space``). A trial trains
with its parameters completed as the ``tuned`` recipe set completes a table entry (an Adam trial
gets Adam's own defaults, not the common SGD recipe's weight decay), so a tuned table entry made of
the best trial's parameters trains exactly like that trial.

Equal-budget tuning (:func:`tune_models`) runs one study per model with the same trial budget,
profile, data and seed; :func:`recipe_table` turns the finished studies into the tuned recipe table
(``bench3d2d/engine/tuned_recipes.json``, read by :func:`bench3d2d.engine.recipes.load_tuned`).

Storage: a SQLite file in the results folder by default; ``journal:PATH`` for a journal file
(many processes on one machine or a shared file system); a ``postgresql://`` (or any
SQLAlchemy) URL for many workers on many machines. ``--trials N`` is the study's total budget,
shared by every worker that tunes it: workers stop once N trials exist, and trial numbers are
never repeated (the storage assigns them).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench3d2d._defaults import DEFAULT_PROFILE
from bench3d2d._io import atomic_write_json
from bench3d2d.engine.recipes import RECIPE_KEYS, TUNED_FORMAT, RecipeError, resolve_recipe, tuned_studies
from bench3d2d.harness._plan import Benchmark, resolve_benchmarks
from bench3d2d.harness._spec import RunSpec, normalise_fraction, short_hash
from bench3d2d.harness._store import ResultsStore

__all__ = [
    "HPARAMS_ATTR",
    "OVER_BUDGET_ATTR",
    "StudySummary",
    "TuneSettings",
    "TuningBudget",
    "TuningError",
    "best_params",
    "budget_differences",
    "check_recipe_keys",
    "database_url",
    "load_study",
    "make_storage",
    "recipe_table",
    "resolve_dataset",
    "shipped_budget",
    "study_name",
    "suggest",
    "summarise_study",
    "trial_hparams",
    "tune",
    "tune_models",
    "write_recipe_table",
]

log = logging.getLogger(__name__)
OVER_BUDGET_ATTR = "over_budget"
#: Trial user attribute: the settings the trial trained with (its parameters, recipe part completed).
HPARAMS_ATTR = "hparams"
DB_FILE = "tuning.db"


class TuningError(LookupError):
    """No usable study (missing, or without a complete trial)."""


def resolve_dataset(dataset: str) -> Benchmark:
    """A benchmark group (``ga``, ``rpd``), a registered dataset or a manifest path."""
    found = resolve_benchmarks([dataset])
    if len(found) != 1:
        raise ValueError(f"--dataset takes one dataset or benchmark group, not {dataset!r}")
    return found[0]


def study_name(model: str, dataset: str, fraction: float, profile: str) -> str:
    """The study of (model, training dataset, fraction in percent, profile)."""
    frac = normalise_fraction(fraction)
    data = dataset
    if "/" in data or "\\" in data:  # a manifest path: its name plus a hash of the full path
        data = f"{Path(data).stem}-{short_hash(data)[:6]}"
    return f"{model}|{data}|{frac:g}%|{profile}"


def database_url(url: str) -> str:
    """A SQLAlchemy URL; ``postgresql://`` gets the installed driver (psycopg 3, else psycopg2)."""
    import importlib.util

    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if importlib.util.find_spec("psycopg") is not None:
                return "postgresql+psycopg://" + rest
            if importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + rest
            raise ImportError(f"storage {url!r} needs a PostgreSQL driver: pip install psycopg2-binary")
    return url


def make_storage(url: str | None, results: str | Path = "results") -> Any:
    """An Optuna storage: SQLite in ``results`` (default), ``journal:PATH``, or a database URL."""

    if not url:
        path = Path(results) / DB_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path.resolve()}"
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :]).expanduser()
        if not path.name:
            raise ValueError(f"journal storage {url!r} needs a file path, e.g. journal:results/tuning.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(
            f"storage {url!r} is not a URL: use sqlite:///FILE, journal:FILE or postgresql://USER@HOST/DB"
        )
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    return _rdb_storage(database_url(url), kwargs)


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], attempts: int = 6) -> Any:
    """``RDBStorage``, retried while another worker is creating the same fresh database's tables.

    Racing schema creations fail with IntegrityError (SQLite: alembic_version) or, on PostgreSQL,
    ProgrammingError (``type "studydirection" already exists``); the loser retries and finds the schema.
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.ProgrammingError,
        ):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def suggest(trial: Any, space: Mapping[str, tuple]) -> dict[str, Any]:
    """One value per search-space entry, in the space's order: ``("log"|"float"|"int", lo, hi)``,
    ``("categorical", [...])``, or a range that depends on an earlier entry's value,
    ``("log"|"float", {"given": NAME, CHOICE: (lo, hi), ...})`` (e.g. the lr range per optimiser)."""
    params: dict[str, Any] = {}
    for name, entry in space.items():
        kind, *args = entry
        if kind in ("log", "float") and len(args) == 1 and isinstance(args[0], Mapping):
            args = list(_conditional_range(name, args[0], params))
        if kind == "log":
            params[name] = trial.suggest_float(name, float(args[0]), float(args[1]), log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, float(args[0]), float(args[1]))
        elif kind == "int":
            params[name] = trial.suggest_int(name, int(args[0]), int(args[1]))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            raise ValueError(
                f"search space entry {name!r} has unknown kind {kind!r} (log, float, int, categorical)"
            )
    return params


def _conditional_range(name: str, ranges: Mapping[str, Any], params: Mapping[str, Any]) -> tuple:
    """``(lo, hi)`` of a conditional entry for the value already drawn for ``ranges["given"]``."""
    given: Any = ranges.get("given")
    if given not in params:
        raise ValueError(f"search space entry {name!r} depends on {given!r}, which must come before it")
    try:
        lo, hi = ranges[params[given]]
    except KeyError:
        raise ValueError(f"search space entry {name!r} has no range for {given}={params[given]!r}") from None
    return lo, hi


def trial_hparams(model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a trial with ``params`` trains with (JSON-friendly).

    The recipe part of ``params`` (keys in ``RECIPE_KEYS``) is completed as the ``tuned`` recipe set
    completes a table entry: an SGD trial gets the common recipe's momentum and weight decay, an Adam
    trial Adam's betas and no weight decay. A tuned table entry of ``params`` then trains exactly like
    the trial. Other parameters (a model's own search-space entries) are passed on unchanged.
    """
    recipe = {k: params[k] for k in RECIPE_KEYS if k in params}
    out = dict(resolve_recipe(model, "tuned", tuned={model: recipe}).values) if recipe else {}
    out.update({k: v for k, v in params.items() if k not in recipe})
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _counted(trial: Any) -> bool:
    return not trial.user_attrs.get(OVER_BUDGET_ATTR, False)


def _budget_left(study: Any, n_trials: int) -> int:
    return n_trials - sum(1 for t in study.get_trials(deepcopy=False) if _counted(t))


def _over_budget(study: Any, trial: Any, n_trials: int) -> bool:
    """Whether trials created before this one already fill the budget."""
    before = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and _counted(t))
    return before >= n_trials


@dataclass(frozen=True)
class TuneSettings:
    """What one study tunes and how: the model, its data, the trial budget, the training set-up.

    ``dataset`` is a benchmark group (``ga``, ``rpd``), a registered dataset or a manifest path;
    ``fraction`` is in percent; ``trials`` is the study's total budget, shared by every worker;
    ``seed`` seeds the runs and the TPE sampler; ``keep_checkpoints`` keeps each trial's weights.
    ``max_steps``: the most steps a trial trains (the tuning's step budget; default: the profile's own
    ``max_steps``); it caps ``min_steps`` too and is not part of the tuned recipe.
    """

    model: str
    dataset: str = "ga"
    fraction: float | str = 100.0
    trials: int = 20
    profile: str = DEFAULT_PROFILE
    seed: int = 0
    pretrain: str = "none"
    keep_checkpoints: bool = False
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"--trials must be at least 1, not {self.trials}")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ValueError(f"--max-steps must be at least 1, not {self.max_steps}")
        object.__setattr__(self, "fraction", normalise_fraction(self.fraction))


def tune(
    settings: TuneSettings,
    storage: str | None = None,
    results: str | Path = "results",
    backend: Any = None,
) -> Any:
    """Tune until the study holds ``settings.trials`` trials; returns the ``optuna.Study``.

    ``storage`` is the Optuna storage (default: SQLite in ``results``); trial folders go to
    ``results/tuning``; ``backend`` does the runs (default: the engine, see ``get_backend``).
    """
    import optuna

    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.harness.sweep import get_backend
    from bench3d2d.models import model_info

    cfg = settings
    backend = backend or get_backend()  # first: a site backend may register models and profiles
    profile = get_profile(cfg.profile)
    info = model_info(cfg.model)
    space = dict(info.search_space)
    if not space:
        raise ValueError(f"model {cfg.model!r} declares no search space in its registry metadata")
    bench = resolve_dataset(cfg.dataset)
    name = study_name(info.name, bench.train_dataset, float(cfg.fraction), cfg.profile)
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(storage, results),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=first_judged_step(profile, cfg)),
    )
    # Workers joining a running study draw other random start-up points than the first one.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)))
    for key, value in (("model", info.name), ("dataset", bench.train_dataset), ("fraction", cfg.fraction),
                       ("profile", cfg.profile)):  # fmt: skip
        study.set_user_attr(key, value)
    template = RunSpec(
        model=info.name,
        train_dataset=bench.train_dataset,
        test_sets=(),
        fraction=float(cfg.fraction),
        seed=cfg.seed,
        profile=cfg.profile,
        pretrain=cfg.pretrain,
        pretrain_source=bench.pretrain_source if cfg.pretrain != "none" else None,
        benchmark="tune",
    )
    trial_root = Path(results) / "tuning" / name.replace("|", "_").replace("%", "pct")
    store = ResultsStore(results)
    while _budget_left(study, cfg.trials) > 0:
        trial = study.ask()
        if _over_budget(study, trial, cfg.trials):
            trial.set_user_attr(OVER_BUDGET_ATTR, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        hparams = trial_hparams(info.name, suggest(trial, space))
        trial.set_user_attr(HPARAMS_ATTR, hparams)
        spec = replace(template, hparams={**hparams, **step_budget(cfg, profile)})
        run_dir = trial_root / f"trial-{trial.number:04d}"
        _run_trial(study, trial, spec, run_dir, backend, store, cfg.keep_checkpoints)
    return study


def _run_trial(
    study: Any,
    trial: Any,
    spec: RunSpec,
    run_dir: Path,
    backend: Any,
    store: ResultsStore,
    keep_checkpoints: bool,
) -> None:
    """Train one trial's run, reporting each validation (pruned below the median), and tell the study."""
    import optuna

    run_dir.mkdir(parents=True, exist_ok=True)
    scores: list[float] = []

    def on_validation(step: int, score: float) -> None:
        scores.append(float(score))
        trial.report(float(score), int(step))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (score {score:.4f})")

    try:
        backend.execute_run(spec, run_dir, store=store, progress=None, on_validation=on_validation)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except Exception as exc:
        log.exception("trial %d failed", trial.number)
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    finally:
        if not keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    finite = [v for v in scores if math.isfinite(v)]
    if not finite:
        trial.set_user_attr("error", "no finite validation score was reported")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, max(finite))


def load_study(name: str, storage: str | None = None, results: str | Path = "results") -> Any:
    """An existing study by name; :class:`TuningError` listing the stored studies if absent."""
    import optuna

    storage_obj = make_storage(storage, results)
    try:
        return optuna.load_study(study_name=name, storage=storage_obj)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage_obj))
        have = ", ".join(names) if names else "none"
        raise TuningError(
            f"no tuning study {name!r} in {storage or Path(results) / DB_FILE} (studies there: {have}); "
            "run `bench3d2d tune` first"
        ) from None


def best_params(
    model: str,
    dataset: str,
    fraction: float,
    profile: str,
    storage: str | None = None,
    results: str | Path = "results",
) -> dict[str, Any]:
    """Settings the best trial for (model, dataset, fraction, profile) trained with (its parameters,
    recipe part completed; see :func:`trial_hparams`).

    Uses the study at that exact fraction, else the model's 100 % study on the same dataset.
    """
    import optuna

    names = [study_name(model, dataset, fraction, profile)]
    if normalise_fraction(fraction) != 100.0:
        names.append(study_name(model, dataset, 100, profile))
    errors = []
    for name in names:
        try:
            study = load_study(name, storage, results)
        except TuningError as exc:
            errors.append(str(exc))
            continue
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            errors.append(f"study {name!r} has no complete trial yet")
            continue
        best = study.best_trial
        return dict(best.user_attrs.get(HPARAMS_ATTR) or best.params)
    raise TuningError("; ".join(errors))


# -- equal-budget tuning of many models and the tuned recipe table ------------------------------------
@dataclass(frozen=True)
class StudySummary:
    """What one finished study says: its set-up, trial counts per state and best trial.

    ``budget`` is the study's trial budget (``--trials``); ``states`` counts the trials within it per
    state (``complete``, ``pruned``, ``fail``, ...), plus ``over_budget`` for racing workers' extra
    trials. ``best_value``, ``best_trial`` and ``best_params`` (the searched parameters) are None
    without a complete trial.
    """

    model: str
    study: str
    dataset: str
    fraction: float
    profile: str
    seed: int
    budget: int
    states: Mapping[str, int]
    search_space: Mapping[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    best_value: float | None = None
    best_trial: int | None = None
    best_params: Mapping[str, Any] | None = None

    @property
    def counted(self) -> int:
        """Trials that count against the budget."""
        return sum(n for state, n in self.states.items() if state != OVER_BUDGET_ATTR)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (search-space tuples as lists)."""
        return {
            "model": self.model, "study": self.study, "dataset": self.dataset, "fraction": self.fraction,
            "profile": self.profile, "max_steps": self.max_steps, "seed": self.seed, "trials": self.budget,
            "states": dict(self.states),
            "search_space": {k: _plain_json(v) for k, v in self.search_space.items()},
            "best_validation_dice": self.best_value, "best_trial": self.best_trial,
            "best_params": None if self.best_params is None else dict(self.best_params),
        }  # fmt: skip


def _plain_json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    return value


def step_budget(settings: TuneSettings, profile: Any) -> dict[str, int]:
    """The trial overrides that set ``settings.max_steps`` (none when it is not given)."""
    if settings.max_steps is None:
        return {}
    steps = int(settings.max_steps)
    if not profile.converges:
        raise ValueError(f"--max-steps needs a plateau profile such as 'standard', not {profile.name!r}")
    if not profile.plateau:
        return {"max_steps": steps}
    return {"max_steps": steps, "min_steps": min(int(profile.min_steps), steps)}


def first_judged_step(profile: Any, settings: TuneSettings) -> int:
    """The first step at which the pruner may judge a trial: a plateau profile's ``min_steps``; in a fixed
    step budget the first regular validation (``validate_from`` of the trials' budget: earlier scores, such
    as the failed-fit check, are taken at a high learning rate); else 0."""
    profile = profile.with_overrides(step_budget(settings, profile))
    if profile.plateau:
        return int(profile.min_steps)
    if profile.converges:
        return math.ceil(float(profile.validate_from) * int(profile.max_steps))
    return 0


def summarise_study(study: Any, settings: TuneSettings) -> StudySummary:
    """The :class:`StudySummary` of ``study``, tuned under ``settings``."""
    import optuna

    from bench3d2d.models import model_info

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        key = t.state.name.lower() if _counted(t) else OVER_BUDGET_ATTR
        states[key] = states.get(key, 0) + 1
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if done else None
    return StudySummary(
        model=settings.model,
        study=study.study_name,
        dataset=str(study.user_attrs.get("dataset", settings.dataset)),
        fraction=float(settings.fraction),
        profile=settings.profile,
        seed=settings.seed,
        budget=settings.trials,
        states=dict(sorted(states.items())),
        search_space=dict(model_info(settings.model).search_space),
        max_steps=settings.max_steps,
        best_value=None if best is None else float(best.value),
        best_trial=None if best is None else best.number,
        best_params=None if best is None else dict(best.params),
    )


def check_recipe_keys(model: str, keys: Iterable[str], where: str) -> None:
    """Raise :class:`~bench3d2d.engine.recipes.RecipeError` if ``keys`` (tuned parameters, or a search
    space) hold anything a tuned recipe cannot set (``RECIPE_KEYS``); ``where`` says whose they are."""
    unknown = sorted(set(keys) - set(RECIPE_KEYS))
    if unknown:
        raise RecipeError(
            f"{where} of model {model!r} has parameter(s) {', '.join(unknown)} that a tuned recipe cannot "
            f"hold (allowed: {', '.join(RECIPE_KEYS)}); tune them without --write-recipes"
        )


def tune_models(
    settings: Sequence[TuneSettings],
    storage: str | None = None,
    results: str | Path = "results",
    backend: Any = None,
    on_study: Callable[[StudySummary], None] | None = None,
) -> list[StudySummary]:
    """Tune one study per entry of ``settings``, one after another; their summaries, in that order.

    Equal budget: give every entry the same ``trials``, ``profile``, ``max_steps``, ``dataset``,
    ``fraction`` and ``seed`` (only ``model`` differs); a :class:`ValueError` says which differs
    otherwise. Every
    model's search space is checked before the first trial. ``on_study`` is called with each summary
    as soon as its study is done.
    """
    from bench3d2d.harness.sweep import get_backend
    from bench3d2d.models import model_info

    backend = backend or get_backend()
    shared = {(s.dataset, s.fraction, s.trials, s.profile, s.max_steps, s.seed, s.pretrain) for s in settings}
    if len(shared) > 1:
        raise ValueError(f"an equal budget needs the same dataset, fraction, trials, profile, max_steps, "
                         f"seed and pre-training for every model, got {sorted(shared, key=str)}")  # fmt: skip
    for s in settings:
        if not model_info(s.model).search_space:
            raise ValueError(f"model {s.model!r} declares no search space in its registry metadata")
    summaries = []
    for s in settings:
        summary = summarise_study(tune(s, storage=storage, results=results, backend=backend), s)
        summaries.append(summary)
        if on_study is not None:
            on_study(summary)
    return summaries


def recipe_table(summaries: Sequence[StudySummary], command: str) -> dict[str, Any]:
    """The tuned recipe table (format ``bench3d2d-tuned-recipes/1``) of finished studies.

    Each model with a complete trial gets its best trial's parameters as recipe values, plus a
    ``_study`` entry (study name, dataset, fraction, profile, seed, trial budget, counts per state,
    best validation Dice and trial, search space, ``command``). A model without a complete trial gets
    no entry and is listed under ``not_tuned``. ``command`` is the command line that reproduces the
    table. A parameter outside ``RECIPE_KEYS``, or a study holding more trials than its budget (not an
    equal budget), raises :class:`~bench3d2d.engine.recipes.RecipeError` naming it.
    """
    recipes: dict[str, dict[str, Any]] = {}
    not_tuned: dict[str, str] = {}
    for s in sorted(summaries, key=lambda x: x.model):
        if s.counted > s.budget:
            raise RecipeError(
                f"study {s.study!r} holds {s.counted} trials, more than the budget of {s.budget}: its best "
                "trial is not an equal-budget result; tune into a fresh --out (or --storage)"
            )
        if s.best_params is None:
            counts = ", ".join(f"{k} {v}" for k, v in s.states.items()) or "no trials"
            not_tuned[s.model] = f"study {s.study!r} has no complete trial ({counts})"
            continue
        check_recipe_keys(s.model, s.best_params, f"the best trial of study {s.study!r}")
        entry: dict[str, Any] = {k: _plain_json(s.best_params[k]) for k in RECIPE_KEYS if k in s.best_params}
        study = s.to_dict()
        del study["model"], study["best_params"]
        entry["_study"] = {**study, "command": command}
        recipes[s.model] = entry
    return {
        "format": TUNED_FORMAT,
        "description": "Per-model recipes from the equal-budget tuning (bench3d2d tune): every model had "
        "the same number of Optuna trials under the same profile, data and seed, scored on validation "
        "Dice only (no test set); each entry is its best trial's parameters, '_study' says how it was "
        "found. A model without an entry trains with its official recipe (without one, the common recipe).",
        "command": command,
        "not_tuned": not_tuned,
        "recipes": recipes,
    }


def write_recipe_table(path: str | Path, table: Mapping[str, Any]) -> Path:
    """Write a :func:`recipe_table` to ``path`` atomically (the old file stays whole until replaced)."""
    return atomic_write_json(path, dict(table), sort_keys=False)


# -- the shipped table's budget: what "equal" means for a model tuned later --------------------------------
@dataclass(frozen=True)
class TuningBudget:
    """The budget every model of a tuned table was tuned with, as its ``_study`` records say: trials,
    profile, step budget, training dataset, label fraction, seed and search space."""

    trials: int
    profile: str
    max_steps: int | None
    dataset: str
    fraction: float
    seed: int
    search_space: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: ``6 trials of profile standard (at most 200 steps a trial) on ... at 100 %, seed 0``."""
        steps = f" (at most {self.max_steps} steps a trial)" if self.max_steps else ""
        return (f"{self.trials} trials of profile {self.profile}{steps} on {self.dataset} at "
                f"{self.fraction:g} %, seed {self.seed}")  # fmt: skip


def _budget_of(study: Mapping[str, Any]) -> TuningBudget:
    return TuningBudget(
        trials=int(study["trials"]),
        profile=str(study["profile"]),
        max_steps=None if study.get("max_steps") is None else int(study["max_steps"]),
        dataset=str(study["dataset"]),
        fraction=float(study["fraction"]),
        seed=int(study["seed"]),
        search_space=_json_form(study.get("search_space") or {}),
    )


def _json_form(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), so that spaces compare by content."""
    import json

    return json.loads(json.dumps(value))


def shipped_budget(path: str | Path | None = None) -> TuningBudget | None:
    """The budget the shipped tuned table's models were tuned with (``path``: another table), read from
    their ``_study`` records, so it follows the table whenever it is regenerated. None when the table
    records none; a :class:`~bench3d2d.engine.recipes.RecipeError` when its models were tuned with
    different budgets (then no budget is "the" equal one)."""
    studies = tuned_studies(path)
    try:
        budgets = {model: _budget_of(study) for model, study in studies.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise RecipeError(f"the shipped tuned table's _study records lack a budget field ({exc})") from None
    distinct = {repr(b) for b in budgets.values()}
    if len(distinct) > 1:
        raise RecipeError(
            f"the shipped tuned table's models were tuned with different budgets: {sorted(distinct)}"
        )
    return next(iter(budgets.values()), None)


def budget_differences(settings: TuneSettings, budget: TuningBudget) -> list[str]:
    """How ``settings`` (one model's study) differ from ``budget``, one phrase each; empty when equal."""
    from bench3d2d.models import model_info

    mine = {
        "trials": settings.trials,
        "profile": settings.profile,
        "max_steps": settings.max_steps,
        "dataset": resolve_dataset(settings.dataset).train_dataset,
        "fraction": float(settings.fraction),
        "seed": settings.seed,
    }
    out = [f"{k} {v} (shipped: {getattr(budget, k)})" for k, v in mine.items() if v != getattr(budget, k)]
    if settings.pretrain != "none":
        out.append(f"pretrain {settings.pretrain} (shipped: none)")
    space = _json_form(dict(model_info(settings.model).search_space))
    if budget.search_space and space != budget.search_space:
        out.append(
            f"{settings.model}'s search space {space} (shipped: {budget.search_space}; register the model "
            "without search_space to get the default one)"
        )
    return out
