"""``bench3d2d tune``: equal-budget Optuna search of models' training recipes on validation Dice."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from bench3d2d._defaults import DEFAULT_PROFILE
from bench3d2d.commands._options import add_list_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` sub-command."""
    p = subparsers.add_parser(
        "tune",
        help="tune models' recipes with Optuna under one budget (many workers may share the studies)",
        description="Tune each model in turn, one study each, over its registry search space, maximising "
        "validation Dice with median pruning. Every model gets the same number of trials under the same "
        "profile, data and seed (an equal budget): by default the budget the shipped tuned table's models "
        "got, as its entries record it. --write-recipes writes the tuned recipe table (for `bench3d2d run "
        "--recipes FILE`); a table layered over the shipped one must use the shipped budget. Start the "
        "same command on several machines with one --storage to tune in parallel.",
    )
    models = add_list_option(
        p,
        "--models",
        default=None,
        metavar="MODEL,...",
        help="model names, wildcards ('ipn*') or all, comma-separated",
    )
    models.required = True
    shipped = " (default: the shipped table's budget)"
    p.add_argument(
        "--dataset", default=None, help="benchmark group (ga, rpd), dataset name or manifest path" + shipped
    )
    p.add_argument("--fraction", default=None, help="label fraction in percent" + shipped)
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials of each model's study (its total, over all workers)" + shipped,
    )
    p.add_argument(
        "--storage",
        default=None,
        help="sqlite:///FILE, journal:FILE or postgresql://USER@HOST/DB (default: RESULTS/tuning.db)",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="training profile of every trial (its step budget), the same for every model" + shipped,
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="the most steps a trial trains, the same for every model (default: the shipped table's, with "
        "its profile; else the profile's max_steps)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the runs and of the TPE sampler" + shipped)
    p.add_argument(
        "--pretrain",
        default="none",
        choices=["none", "slo", "faf"],
        help="fine-tune from SSL weights reconstructing this modality",
    )
    p.add_argument("--out", default="results", help="results folder")
    p.add_argument(
        "--write-recipes",
        default=None,
        metavar="FILE",
        help="after the studies, write the tuned recipe table (format bench3d2d-tuned-recipes/1) "
        "to FILE: each model's best trial, with its study summary (default: no table)",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each trial's checkpoints")
    p.add_argument(
        "--json", action="store_true", help="print the summary as JSON (default: one line per model)"
    )
    p.set_defaults(func=run)


def reproducing_command(args: argparse.Namespace, fraction: float) -> str:
    """The command line that redoes this tuning (every option that shapes the result, defaults too)."""
    argv = ["bench3d2d", "tune", "--models", ",".join(args.models), "--dataset", args.dataset,
            "--fraction", f"{fraction:g}", "--trials", str(args.trials), "--profile", args.profile,
            "--seed", str(args.seed)]  # fmt: skip
    if args.max_steps is not None:
        argv += ["--max-steps", str(args.max_steps)]
    if args.pretrain != "none":
        argv += ["--pretrain", args.pretrain]
    if args.storage:
        argv += ["--storage", args.storage]
    argv += ["--out", args.out]
    if args.write_recipes:
        argv += ["--write-recipes", args.write_recipes]
    return shlex.join(argv)


def _budget_line(settings: Any, names: list[str]) -> str:
    from bench3d2d.engine.profiles import get_profile

    prof = get_profile(settings.profile)
    most = settings.max_steps or prof.max_steps
    steps = f"at most {most} steps a trial" if most else "its step rule"
    return (f"equal budget: {len(names)} model(s) ({', '.join(names)}), each {settings.trials} trials of "
            f"profile {prof.name} ({steps}) on {settings.dataset} at {settings.fraction:g} %, seed "
            f"{settings.seed}; scored on validation Dice (no test set)")  # fmt: skip


def _shipped_line(budget: Any, differences: list[str]) -> str:
    if not differences:
        return ("the same budget as the shipped table's models: the entries can be layered over it "
                "(bench3d2d run --recipes FILE)")  # fmt: skip
    return f"NOT the shipped table's budget ({budget.describe()}): {'; '.join(differences)}"


def _model_line(s: Any) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in s.states.items()) or "no trials"
    if s.best_params is None:
        return f"{s.model}: no complete trial ({counts}); not tuned  [{s.study}]"
    return (f"{s.model}: best validation Dice {s.best_value:.4f} (trial {s.best_trial}; {counts}) "
            f"{json.dumps(dict(s.best_params), sort_keys=True)}  [{s.study}]")  # fmt: skip


def fill_budget(args: argparse.Namespace, budget: Any) -> None:
    """Options not given take the shipped table's budget (``budget``; None: the usual defaults)."""
    fallback = {"dataset": "ga", "fraction": "100", "profile": DEFAULT_PROFILE, "seed": 0, "trials": None}
    for key, default in fallback.items():
        if getattr(args, key) is None:
            setattr(args, key, getattr(budget, key) if budget is not None else default)
    if args.max_steps is None and budget is not None and args.profile == budget.profile:
        args.max_steps = budget.max_steps
    if args.trials is None:
        raise ValueError("--trials is required: there is no shipped tuned table whose budget it could follow")


def _shipped_budget(args: argparse.Namespace, read: Any) -> Any:
    """The shipped table's budget; when its entries disagree, an error only for ``--write-recipes``
    (which must compare with it), else a note and no budget to follow."""
    from bench3d2d.engine.recipes import RecipeError

    try:
        return read()
    except RecipeError as exc:
        if args.write_recipes:
            raise
        print(f"note: {exc}; no shipped budget to follow", file=sys.stderr)
        return None


def equal_budget_check(args: argparse.Namespace, settings: list[Any], budget: Any) -> list[str]:
    """How this tuning differs from the shipped table's budget; raises when ``--write-recipes`` would
    write a table to layer over the shipped one with another budget (not an equal fight)."""
    from bench3d2d.engine.recipes import RecipeError, tuned_studies
    from bench3d2d.harness.tune import budget_differences

    if budget is None:
        return []
    differences = list(dict.fromkeys(d for s in settings for d in budget_differences(s, budget)))
    shipped_models = sorted(tuned_studies())
    complete = set(shipped_models) <= {s.model for s in settings}
    if differences and args.write_recipes and not complete:
        raise RecipeError(
            f"--write-recipes: not the budget the shipped table's models were tuned with "
            f"({budget.describe()}): {'; '.join(differences)}. A table layered over the shipped one must "
            "give its models the same budget: leave those options out; or tune every shipped model too "
            f"({', '.join(shipped_models)}) to make a complete table of your own"
        )
    return differences


def run(args: argparse.Namespace) -> int:
    """Tune every model in turn, print one line per model, write the recipe table if asked."""
    from bench3d2d.engine.acceleration import retain_freed_memory

    retain_freed_memory()  # fewer page faults: 7-30 % less CPU per step (docs/performance.md)
    from bench3d2d.harness.sweep import get_backend, resolve_models
    from bench3d2d.harness.tune import (
        TuneSettings,
        check_recipe_keys,
        recipe_table,
        shipped_budget,
        tune_models,
        write_recipe_table,
    )
    from bench3d2d.models import model_info

    backend = get_backend()  # first: a site backend may register models and profiles
    names = resolve_models(args.models)
    budget = _shipped_budget(args, shipped_budget)
    fill_budget(args, budget)
    settings = [
        TuneSettings(model=name, dataset=args.dataset, fraction=args.fraction, trials=args.trials,
                     profile=args.profile, seed=args.seed, pretrain=args.pretrain,
                     keep_checkpoints=args.keep_checkpoints, max_steps=args.max_steps)
        for name in names
    ]  # fmt: skip
    if args.write_recipes:  # fail before hours of tuning, not after
        for name in names:
            check_recipe_keys(name, model_info(name).search_space, "the search space")
    differences = equal_budget_check(args, settings, budget)
    if not args.json:
        print(_budget_line(settings[0], names), flush=True)
        if budget is not None:
            print(_shipped_line(budget, differences), flush=True)
    on_study = None if args.json else (lambda s: print(_model_line(s), flush=True))
    summaries = tune_models(settings, storage=args.storage, results=args.out, backend=backend,
                            on_study=on_study)  # fmt: skip
    command = reproducing_command(args, float(settings[0].fraction))
    not_tuned = [s.model for s in summaries if s.best_params is None]
    if args.write_recipes:
        write_recipe_table(args.write_recipes, recipe_table(summaries, command))
    if args.json:
        first = settings[0]
        equal = {"trials": first.trials, "profile": first.profile, "max_steps": first.max_steps,
                 "dataset": first.dataset, "fraction": first.fraction, "seed": first.seed,
                 "pretrain": first.pretrain}  # fmt: skip
        studies = [s.to_dict() for s in summaries]
        print(json.dumps({"equal_budget": equal, "shipped_budget_differences": differences,
                          "command": command, "studies": studies, "not_tuned": not_tuned,
                          "recipes": args.write_recipes}, indent=2))  # fmt: skip
    else:
        if not_tuned:
            print(f"not tuned (no complete trial, no recipe entry): {', '.join(not_tuned)}")
        if args.write_recipes:
            print(f"wrote the tuned recipe table ({len(summaries) - len(not_tuned)} model(s)) to "
                  f"{args.write_recipes}; reproduce it with: {command}")  # fmt: skip
    return 1 if not_tuned else 0
