"""Learning curves: validation score against step for every registered model, as evidence for the step
counts of the default profile (``docs/training.md``, "Learning curves").

Three sub-commands (run from the project root; ``python benchmarks/learning_curves.py SUB --help``):

``run --out DIR [--factor 2] [--recipes tuned,common] [--seed 0] [--models all] [--profile standard]
[--jobs N --executor subprocess] [--dry-run]``
    Plans and runs, through the harness (``bench3d2d.harness.sweep``: resumable, claimed, failures
    recorded; the same command continues an interrupted job), for every model:

    * the profile (default ``standard``, the default profile) with the hyper-parameter overrides
      ``min_steps = max_steps = factor x the profile's max_steps`` (no early stop: every curve runs to
      the end of the long budget), pre-training ``none``, at GA 5 %, GA 100 % and RPD 100 %
      (benchmark groups ``ga`` and ``rpd``);
    * for every model tagged ``ssl`` (the FPB net, Lachinov et al.): the same at GA 100 % after SLO and
      FAF pre-training. Those runs need the SSL pre-trainings, whose result.json records the
      pre-training's validation SSIM history. The overrides apply to fine-tuning only: a pre-training
      trains exactly as in a sweep of the profile (it stops on its own SSIM plateau) and is shared with it.

    Each recipe set of ``--recipes`` is planned in turn. The first is the reference (``tuned``, the
    default sweep's); a later set (``common``) is planned for a model only where its resolved recipe
    differs from the reference's (``bench3d2d.engine.recipes.resolve_recipe``), since the curves would be
    the same training under another run id. The plan size is printed first (``--dry-run``: only that).

``plot --out DIR --png docs/img/learning-curves.png [--csv DIR/curves.csv]``
    Reads every complete run's and pre-training's ``result.json`` (its ``history``) and draws one panel
    per model (validation Dice against step, one line per condition x recipe set; dashed vertical lines
    at the profile's ``min_steps`` and ``max_steps``) and one panel of pre-training validation SSIM
    against step. Writes the CSV, one row per curve: model, condition, recipe set, seed, best score and
    its step, the plateau step (below) and the final test Dice on the training set's own test split
    (mean over its cases in the run's ``cases.csv``; empty for pre-trainings).

``table --out DIR``
    Prints the same per-curve table as Markdown (for ``docs/training.md``).

``convergence --out DIR``
    For every model and condition run at two budgets (``run --factor 1`` and ``run --factor 2`` into one
    results folder: the same schedule, stretched), the mean test Dice on the training set's own test split
    at each and their difference; exit status 1 when one differs by more than 0.03 (:data:`CONVERGED_TOL`).

**Plateau step.** The first validation step whose score is within ``0.01`` (:data:`PLATEAU_TOL`) of the
best score of that curve; NaN scores are ignored. A profile's ``max_steps`` is past a curve's plateau
when it is at least that step.

Example (the integrator's job; hours on a 2-core CPU)::

    OMP_NUM_THREADS=1 BENCH3D2D_THREADS=1 python benchmarks/learning_curves.py run --out results/curves
    python benchmarks/learning_curves.py plot --out results/curves --png docs/img/learning-curves.png
    python benchmarks/learning_curves.py table --out results/curves
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: A validation within this much of the curve's best score counts as on its plateau.
PLATEAU_TOL = 0.01
#: The conditions of the plan: (benchmark group, label fractions, pre-training variants).
NO_SSL = ("ga,rpd", "5,100", "none")  # rpd runs only at 20 and 100 %, so this is GA 5/100 %, RPD 100 %
WITH_SSL = ("ga", "100", "slo,faf")
#: Order of the conditions in the figure and the tables.
CONDITION_ORDER = ("GA 5 %", "GA 100 %", "RPD 100 %", "GA 100 % SSL-SLO", "GA 100 % SSL-FAF")
#: Order of the recipe sets in legends and tables, and their line styles (dashed marks the profile's bounds).
RECIPE_ORDER = ("tuned", "official", "common")
RECIPE_STYLES = {"tuned": "-", "official": ":", "common": "-."}
#: Line styles of a panel's budgets when it has several (the smallest first): solid, then dashed.
BUDGET_STYLES = ("-", "--", ":")
#: The largest difference of mean test Dice between a budget and twice that budget that counts as converged.
CONVERGED_TOL = 0.03
CSV_COLUMNS = (
    "kind",
    "model",
    "condition",
    "recipe",
    "seed",
    "profile",
    "score_name",
    "validations",
    "last_step",
    "best_score",
    "best_step",
    "plateau_step",
    "test_dice",
    "test_cases",
    "id",
)


# -- the plan ---------------------------------------------------------------------------------------
def long_overrides(profile: str, factor: float) -> dict[str, Any]:
    """The profile stretched to ``factor x`` its ``max_steps`` (the schedule stretches with it), validated
    from the first round so that the whole curve is seen; its top-k rule (``select_from``) is kept. At
    ``factor`` 1 a fixed budget gets no override at all: those runs are the sweep's own (same run ids), so
    a learning-curve folder that is also the sweep's results folder shares them. A plateau profile gets
    ``min_steps = max_steps`` (no early stop)."""
    from bench3d2d.engine.profiles import get_profile

    prof = get_profile(profile)
    if not prof.converges:
        raise ValueError(
            f"profile {profile!r} has no max_steps (not a step-budget profile); learning curves "
            "need one such as 'standard'"
        )
    if factor <= 0:
        raise ValueError(f"--factor must be positive (got {factor})")
    steps = round(factor * int(prof.max_steps))
    if prof.plateau:
        return {"min_steps": steps, "max_steps": steps}
    if steps == int(prof.max_steps):
        return {}  # the budget itself: exactly the sweep's runs (same run ids, shared with a sweep's folder)
    return {"max_steps": steps, "validate_from": 0.0}


def recipe_models(models: Sequence[str], recipes: Sequence[str]) -> dict[str, list[str]]:
    """For each recipe set, the models planned under it: all under the first (the reference); under a
    later set only those whose resolved recipe differs from their reference recipe."""
    from bench3d2d.engine.recipes import resolve_recipe

    if not recipes:
        raise ValueError("--recipes: give at least one recipe set")
    first, out = recipes[0], {}
    for recipe in recipes:
        out[recipe] = [
            m
            for m in models
            if recipe == first
            or dict(resolve_recipe(m, recipe).values) != dict(resolve_recipe(m, first).values)
        ]
    return out


def build_plan(
    models: str | Sequence[str],
    recipes: Sequence[str],
    seed: int,
    profile: str = "standard",
    factor: float = 2.0,
) -> Any:
    """The learning-curve plan (a ``bench3d2d.harness.sweep.Plan``): see the module docstring."""
    from bench3d2d.harness.sweep import Plan, PlanOptions, expand_plan, resolve_models

    hparams = long_overrides(profile, factor)
    names = resolve_models(models)
    plan = Plan(runs=[])
    pretrainings: dict[str, Any] = {}
    for recipe, chosen in recipe_models(names, list(recipes)).items():
        if not chosen:
            plan.notes.append(f"recipe set {recipe}: every model's recipe equals its reference; none planned")
            continue
        options = PlanOptions(hparams_for=lambda *_: hparams, recipe=recipe)
        for datasets, fractions, pretrain in (NO_SSL, WITH_SSL):
            part = expand_plan(chosen, fractions, datasets, pretrain, [seed], profile, options)
            plan.runs += part.runs
            plan.notes += part.notes
            pretrainings.update({p.key: p for p in part.pretrainings})
    plan.runs = list({s.run_id: s for s in plan.runs}.values())
    plan.pretrainings = list(pretrainings.values())
    plan.notes = list(dict.fromkeys(plan.notes))
    return plan


def only_conditions(plan: Any, conditions: str) -> Any:
    """The plan cut to the conditions named in ``conditions`` (labels of :data:`CONDITION_ORDER`,
    comma-separated, e.g. ``"GA 100 %,GA 100 % SSL-FAF"``); its pre-trainings follow its runs."""
    wanted = [c.strip() for c in conditions.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CONDITION_ORDER]
    if unknown:
        raise ValueError(f"--conditions: unknown {unknown}; choose among {', '.join(CONDITION_ORDER)}")
    runs = [s for s in plan.runs if condition_of(vars(s)) in wanted]
    needed = {(s.model, s.pretrain) for s in runs}
    pretrainings = [p for p in plan.pretrainings if (p.model, p.modality) in needed]
    return replace(plan, runs=runs, pretrainings=pretrainings)


def run_command(args: argparse.Namespace) -> int:
    """``run``: print the plan size, then run it (resumable)."""
    from bench3d2d.commands.run import print_plan
    from bench3d2d.harness.executors import SweepProgress, make_executor
    from bench3d2d.harness.sweep import ResultsStore, get_backend, run_sweep, select_work

    get_backend()  # fail fast, and let a site backend register its models first
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    plan = build_plan(args.models, recipes, args.seed, args.profile, args.factor)
    if args.conditions:
        plan = only_conditions(plan, args.conditions)
    store = ResultsStore(args.out)
    from bench3d2d.engine.profiles import get_profile

    steps = long_overrides(args.profile, args.factor).get("max_steps", get_profile(args.profile).max_steps)
    print(
        f"learning curves: profile {args.profile} at {steps} steps (no early stop), "
        f"recipe sets {', '.join(recipes)}, seed {args.seed}"
    )
    print_plan(plan, store, args.jobs, retry_failed=False, listing=args.dry_run)
    if args.dry_run or not plan.runs:
        return 0
    executor = make_executor(args.executor, jobs=args.jobs)
    work = select_work(plan, store)
    progress = SweepProgress(
        total=len(work.runs) + len(work.pretrainings), enabled=False if args.no_progress else None
    )
    report = run_sweep(plan, store, executor=executor, progress=progress)
    print(
        f"done in {report.seconds:.0f} s: {report.count('complete')} runs completed, "
        f"{report.skipped_complete} already complete, {report.count('failed')} failed"
    )
    for o in report.failed:
        print(f"failed {o.kind} {o.id} ({o.label}): {o.error}", file=sys.stderr)
    return 1 if report.failed else 0


# -- reading the curves -----------------------------------------------------------------------------
@dataclass
class Curve:
    """One validation history: a run's (Dice) or a pre-training's (SSIM)."""

    kind: str  # "run" or "pretrain"
    model: str
    condition: str
    recipe: str
    seed: int
    profile: str
    steps: list[int]
    scores: list[float]
    id: str
    test_dice: float | None = None
    test_cases: int = 0
    budget: int | None = None  # the run's max_steps (its profile's, or the override)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score_name(self) -> str:
        """``dice`` for runs, ``ssim`` for pre-trainings."""
        return "dice" if self.kind == "run" else "ssim"


def plateau_step(steps: Sequence[int], scores: Sequence[float], tol: float = PLATEAU_TOL) -> int | None:
    """The first step whose score is within ``tol`` of the best score (NaN scores ignored); None when
    every score is NaN (or there is none)."""
    finite = [(int(s), float(v)) for s, v in zip(steps, scores) if v is not None and math.isfinite(v)]
    if not finite:
        return None
    best = max(v for _, v in finite)
    return next(s for s, v in finite if v >= best - tol)


def best_of(steps: Sequence[int], scores: Sequence[float]) -> tuple[float | None, int | None]:
    """The best finite score and its (first) step."""
    finite = [(float(v), int(s)) for s, v in zip(steps, scores) if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    best = max(v for v, _ in finite)
    return best, next(s for v, s in finite if v == best)


def condition_of(spec: Mapping[str, Any]) -> str:
    """``GA 5 %``, ``RPD 100 %``, ``GA 100 % SSL-FAF``: benchmark group, label fraction, pre-training."""
    group = str(spec.get("benchmark") or spec.get("train_dataset", "?")).upper()
    text = f"{group} {float(spec.get('fraction', 0)):g} %"
    pretrain = str(spec.get("pretrain") or "none")
    return text if pretrain == "none" else f"{text} SSL-{pretrain.upper()}"


def _history(path: Path, data: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    """Steps and scores of a result.json's ``history``; a clear error when it is malformed."""
    history = data.get("history")
    if not isinstance(history, list):
        raise ValueError(f"{path}: 'history' is not a list")
    try:
        return [int(h["step"]) for h in history], [float(h["score"]) for h in history]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a 'history' entry lacks a numeric step or score ({exc!r})") from None


def own_test_dice(run_dir: Path, train_dataset: str) -> tuple[float | None, int]:
    """Mean Dice on the training dataset's own test split (its ``cases.csv`` rows with ``test_set`` equal to
    the training dataset) and the number of cases; (None, 0) without such rows."""
    import pandas as pd

    from bench3d2d.results import CASES_FILE

    path = run_dir / CASES_FILE
    if not path.is_file():
        return None, 0
    cases = pd.read_csv(path)
    missing = {"test_set", "metric", "value"} - set(cases.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    rows = cases[(cases["test_set"] == train_dataset) & (cases["metric"] == "dice")]
    if rows.empty:
        return None, 0
    return float(rows["value"].mean()), len(rows)


def _read(path: Path) -> dict[str, Any] | None:
    """A complete result.json, None for an incomplete one; a clear error for an unreadable one."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    return data if isinstance(data, dict) and data.get("status") == "complete" else None


def _curve(kind: str, path: Path, data: Mapping[str, Any]) -> Curve:
    """The curve of one complete result.json (``kind``: ``run`` or ``pretrain``)."""
    spec = data.get("spec") or {}
    steps, scores = _history(path, data)
    if kind == "run":
        condition, ident = condition_of(spec), str(data.get("run_id", path.parent.name))
        dice, n = own_test_dice(path.parent, str(spec.get("train_dataset", "")))
    else:
        condition = f"SSL-{str(spec.get('modality', '?')).upper()} on {spec.get('source', '?')}"
        ident, dice, n = str(data.get("key", path.parent.name)), None, 0
    return Curve(
        kind,
        str(spec.get("model", "?")),
        condition,
        str(spec.get("recipe", "?")),
        int(spec.get("seed", 0)),
        str(spec.get("profile", "")),
        steps,
        scores,
        ident,
        dice,
        n,
        _budget(spec),
    )


def _budget(spec: Mapping[str, Any]) -> int | None:
    """The step budget of a run spec: its ``max_steps`` override, else its profile's (None: round-based)."""
    from bench3d2d.engine.profiles import get_profile

    override = (spec.get("hparams") or {}).get("max_steps")
    if override is not None:
        return int(override)
    try:
        prof = get_profile(str(spec.get("profile", "")))
    except ValueError:
        return None
    return int(prof.max_steps) if prof.converges else None


def read_curves(out: Path) -> tuple[list[Curve], list[str]]:
    """Every curve of a results folder (complete runs and pre-trainings with a ``history``), and warnings
    about complete ones without a history (made before result.json recorded it)."""
    from bench3d2d.results import PRETRAIN_DIR, RESULT_FILE, RUNS_DIR

    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"results folder not found: {out}")
    curves, warnings = [], []
    for kind, folder in (("run", RUNS_DIR), ("pretrain", PRETRAIN_DIR)):
        for path in sorted((out / folder).glob(f"*/{RESULT_FILE}")):
            data = _read(path)
            if data is None:
                continue
            if "history" not in data:
                warnings.append(
                    f"{path}: no validation history (made before result.json recorded it); skipped"
                )
                continue
            curves.append(_curve(kind, path, data))
    curves.sort(key=_order)
    return curves, warnings


def _order(c: Curve) -> tuple:
    rank = CONDITION_ORDER.index(c.condition) if c.condition in CONDITION_ORDER else len(CONDITION_ORDER)
    return (c.kind != "run", c.model, rank, c.condition, _recipe_rank(c.recipe), c.recipe, c.seed)


def _recipe_rank(recipe: str) -> int:
    return RECIPE_ORDER.index(recipe) if recipe in RECIPE_ORDER else len(RECIPE_ORDER)


def curve_rows(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    """One row per curve (the CSV's columns, :data:`CSV_COLUMNS`)."""
    rows = []
    for c in curves:
        best, at = best_of(c.steps, c.scores)
        rows.append(
            {
                "kind": c.kind,
                "model": c.model,
                "condition": c.condition,
                "recipe": c.recipe,
                "seed": c.seed,
                "profile": c.profile,
                "score_name": c.score_name,
                "validations": len(c.steps),
                "last_step": c.steps[-1] if c.steps else None,
                "best_score": best,
                "best_step": at,
                "plateau_step": plateau_step(c.steps, c.scores),
                "test_dice": c.test_dice,
                "test_cases": c.test_cases,
                "id": c.id,
            }
        )
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The per-curve table as CSV (written atomically)."""
    import io

    from bench3d2d._io import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return atomic_write_text(Path(path), buf.getvalue())


# -- figure and table -------------------------------------------------------------------------------
def profile_bounds(profile: str) -> tuple[int, int] | None:
    """``(min_steps, max_steps)`` of a named plateau profile as it is now; None for other profiles."""
    from bench3d2d.engine.profiles import get_profile

    try:
        prof = get_profile(profile)
    except ValueError:
        return None
    return (int(prof.min_steps), int(prof.max_steps)) if prof.converges else None


def _panel(
    ax: Any, curves: Sequence[Curve], title: str, colours: Mapping[str, Any], styles: Mapping[str, str]
) -> None:
    """One panel: a line per curve (colour: condition, line style: recipe set), the profile's bounds."""
    budgets = sorted({c.budget for c in curves if c.budget is not None})
    for c in curves:
        label = f"{c.condition}, {c.recipe}" + (f", seed {c.seed}" if c.seed else "")
        style = styles[c.recipe]
        if len(budgets) > 1:
            label += f", {c.budget} steps"
            style = BUDGET_STYLES[min(budgets.index(c.budget), len(BUDGET_STYLES) - 1)]
        ax.plot(
            c.steps,
            c.scores,
            color=colours[c.condition],
            linestyle=style,
            marker=".",
            markersize=3,
            linewidth=1.4,
            label=label,
        )
    for bounds in {profile_bounds(c.profile) for c in curves} - {None}:
        for name, step in zip(("min_steps", "max_steps"), bounds):
            ax.axvline(step, color="0.35", linestyle="--", linewidth=1.0)
            ax.annotate(
                f"{name} {step}",
                (step, 1.0),
                xytext=(3, -3),
                textcoords="offset points",
                rotation=90,
                va="top",
                fontsize=8,
                color="0.35",
            )
    ax.set_title(title, fontsize=12)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot(curves: Sequence[Curve], png: Path, ncols: int = 3) -> Path:
    """The figure: one panel per model (validation Dice), then one of pre-training SSIM; 1600 px wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench3d2d._io import atomic_write

    runs = [c for c in curves if c.kind == "run"]
    pre = [replace(c, condition=f"{c.model} {c.condition}") for c in curves if c.kind == "pretrain"]
    models = list(dict.fromkeys(c.model for c in runs))
    panels = [(m, [c for c in runs if c.model == m], "validation Dice") for m in models]
    if pre:
        panels.append(("SSL pre-training", pre, "validation SSIM"))
    if not panels:
        raise ValueError("no curves to plot (no complete run or pre-training with a history)")
    cmap = plt.get_cmap("tab10")
    colours = {name: cmap(i % 10) for i, name in enumerate(dict.fromkeys(c.condition for c in runs + pre))}
    others = sorted({c.recipe for c in curves} - set(RECIPE_STYLES))
    styles = {**RECIPE_STYLES, **{r: (0, (5, 1 + i)) for i, r in enumerate(others)}}
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(16, 4.2 * nrows), dpi=100, squeeze=False)
    for ax, (title, members, ylabel) in zip(axes.flat, panels):
        _panel(ax, members, title, colours, styles)
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Learning curves: validation score against step (dashed: the profile's min_steps and "
        f"max_steps; plateau = first validation within {PLATEAU_TOL} of the curve's best)",
        fontsize=12,
    )
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(png, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)
    return png


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The plateau table as Markdown: one row per curve, with whether the profile's ``max_steps`` is past
    the curve's plateau step."""

    def num(value: Any, fmt: str) -> str:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return "–" if missing else format(value, fmt)

    lines = [
        "| model | condition | recipe | best (step) | plateau step | max_steps past it | test Dice "
        "(own split) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bounds = profile_bounds(str(r.get("profile", ""))) if r.get("profile") else None
        past = (
            "–"
            if bounds is None or r["plateau_step"] is None
            else ("yes" if bounds[1] >= int(r["plateau_step"]) else "**no**")
        )
        best = f"{num(r['best_score'], '.3f')} {r['score_name']} ({num(r['best_step'], 'd')})"
        lines.append(
            f"| {r['model']} | {r['condition']} | {r['recipe']} | {best} | "
            f"{num(r['plateau_step'], 'd')} | {past} | {num(r['test_dice'], '.3f')} |"
        )
    return "\n".join(lines)


def convergence_rows(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    """Per model and condition (runs only, one recipe set and seed): the test Dice at the smallest budget and
    at each larger one, and whether they differ by at most :data:`CONVERGED_TOL`."""
    groups: dict[tuple, dict[int, Curve]] = {}
    for c in curves:
        if c.kind == "run" and c.budget is not None:
            groups.setdefault((c.model, c.condition, c.recipe, c.seed), {})[c.budget] = c
    rows = []
    for (model, condition, recipe, seed), by_budget in groups.items():
        budgets = sorted(by_budget)
        base = by_budget[budgets[0]]
        for longer in budgets[1:]:
            other = by_budget[longer]
            diff = None
            if base.test_dice is not None and other.test_dice is not None:
                diff = other.test_dice - base.test_dice
            rows.append({"model": model, "condition": condition, "recipe": recipe, "seed": seed,
                         "budget": budgets[0], "test_dice": base.test_dice, "longer": longer,
                         "longer_test_dice": other.test_dice, "difference": diff,
                         "converged": diff is not None and abs(diff) <= CONVERGED_TOL})  # fmt: skip
    return rows


def convergence_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The convergence rows as Markdown."""

    def num(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [
        "| model | condition | test Dice at budget | at longer budget | difference | within "
        f"{CONVERGED_TOL} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "yes" if r["converged"] else "**no**"
        lines.append(
            f"| {r['model']} | {r['condition']} | {num(r['test_dice'])} ({r['budget']}) | "
            f"{num(r['longer_test_dice'])} ({r['longer']}) | {num(r['difference'])} | {ok} |"
        )
    return "\n".join(lines)


def convergence_command(args: argparse.Namespace) -> int:
    """``convergence``: the budget vs longer budget table; exit 1 when a pair differs by more than the
    tolerance or none can be paired."""
    curves, warnings = read_curves(Path(args.out))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    rows = convergence_rows(curves)
    if not rows:
        print(f"{args.out}: no model and condition was run at two budgets", file=sys.stderr)
        return 1
    print(convergence_table(rows))
    return 0 if all(r["converged"] for r in rows) else 1


def plot_command(args: argparse.Namespace) -> int:
    """``plot``: the figure and the CSV."""
    curves, warnings = read_curves(Path(args.out))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    png = plot(curves, Path(args.png))
    path = write_csv(curve_rows(curves), Path(args.csv) if args.csv else Path(args.out) / "curves.csv")
    print(f"{len(curves)} curves: {png}, {path}")
    return 0


def table_command(args: argparse.Namespace) -> int:
    """``table``: the plateau table as Markdown on stdout."""
    curves, warnings = read_curves(Path(args.out))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not curves:
        print(f"{args.out}: no complete run or pre-training with a validation history", file=sys.stderr)
        return 1
    print(markdown_table(curve_rows(curves)))
    print(f"\nPlateau step: the first validation step within {PLATEAU_TOL} of the curve's best score.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="plan and run the long-budget runs (resumable)")
    r.add_argument("--out", required=True, help="results folder")
    r.add_argument("--factor", type=float, default=2.0, help="budget = factor x the profile's max_steps (2)")
    r.add_argument(
        "--recipes",
        default="tuned,common",
        help="recipe sets, the reference first; a later set only where it differs (tuned,common)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed (0)")
    r.add_argument("--models", default="all", help="models, comma-separated, or all (all)")
    r.add_argument(
        "--profile", default="standard", help="the plateau profile whose budget is multiplied (standard)"
    )
    r.add_argument(
        "--executor",
        default="local",
        choices=["local", "subprocess", "slurm"],
        help="where runs happen (local)",
    )
    r.add_argument("--jobs", type=int, default=1, help="parallel workers, subprocess/slurm executors (1)")
    r.add_argument(
        "--conditions",
        default="",
        help="only these conditions, comma-separated: 'GA 5 %%', 'GA 100 %%', 'RPD 100 %%', "
        "'GA 100 %% SSL-SLO', 'GA 100 %% SSL-FAF' (default: all)",
    )
    r.add_argument("--dry-run", action="store_true", help="print and list the plan, run nothing")
    r.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    r.set_defaults(func=run_command)
    p = sub.add_parser("plot", help="draw the curves and write the per-curve CSV")
    p.add_argument("--out", required=True, help="results folder of `run`")
    p.add_argument(
        "--png", default="docs/img/learning-curves.png", help="figure (docs/img/learning-curves.png)"
    )
    p.add_argument("--csv", default=None, help="per-curve table (default: OUT/curves.csv)")
    p.set_defaults(func=plot_command)
    t = sub.add_parser("table", help="print the plateau table as Markdown")
    t.add_argument("--out", required=True, help="results folder of `run`")
    t.set_defaults(func=table_command)
    c = sub.add_parser("convergence", help="test Dice at the budget against a longer budget, as Markdown")
    c.add_argument("--out", required=True, help="results folder of `run` (with runs at --factor 1 and 2)")
    c.set_defaults(func=convergence_command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
