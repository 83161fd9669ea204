"""``bench3d2d run`` (a sweep), ``bench3d2d run-one`` (one stored run, for workers) and ``status``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench3d2d._defaults import DEFAULT_RECIPE
from bench3d2d.commands._options import add_list_option, add_profile_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run``, ``run-one`` and ``status`` sub-commands."""
    p = subparsers.add_parser(
        "run",
        help="run a benchmark sweep (resumable)",
        description="Plan (models x pre-training x fractions x benchmarks x seeds) and run every run that "
        "is not complete yet. Default: the paper's protocol on the synthetic datasets.",
    )
    add_list_option(
        p,
        "--models",
        default=["all"],
        metavar="MODEL,...",
        help="model names, wildcards ('ipn*') or all, comma-separated",
    )
    add_list_option(
        p,
        "--fractions",
        default=["5", "10", "20", "100"],
        metavar="PERCENT,...",
        help="label fractions in percent, comma-separated",
    )
    add_list_option(
        p,
        "--datasets",
        default=["ga", "rpd"],
        metavar="DATASET,...",
        help="benchmark groups (ga, rpd), registered dataset names or manifest paths, comma-separated",
    )
    add_list_option(
        p,
        "--pretrain",
        default=["none", "slo", "faf"],
        metavar="VARIANT,...",
        help="pre-training variants among none, slo, faf, comma-separated",
    )
    # The harness's DEFAULT_SEEDS (tests/test_cli.py checks that they agree).
    add_list_option(
        p,
        "--seeds",
        default=["0", "1", "2"],
        metavar="SEED,...",
        help="seeds, comma-separated, or a range such as 0-4",
    )
    add_profile_option(p)
    p.add_argument(
        "--recipe",
        default=DEFAULT_RECIPE,
        choices=["common", "official", "tuned"],
        help="recipe set (each model's optimiser settings): common (the paper's SGD for "
        "every model), official (each baseline's published optimiser) or tuned",
    )
    p.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="FILE",
        help="a tuned recipe table of your own (`bench3d2d tune --write-recipes FILE`), layered over the "
        "shipped one for --recipe tuned; repeatable, the last given wins (default: the shipped table only)",
    )
    p.add_argument(
        "--allow-untuned",
        action="store_true",
        help="under --recipe tuned, run models that have no tuned entry with their official or the common "
        "recipe (default: refuse, since the others train with tuned recipes)",
    )
    p.add_argument("--out", default="results", help="results folder")
    p.add_argument(
        "--executor",
        default=None,
        choices=["local", "subprocess", "slurm"],
        help="where runs happen: in this process, one subprocess each, or submitit (SLURM) "
        "(default: local; subprocess with --devices)",
    )
    p.add_argument(
        "--devices",
        default=None,
        metavar="cuda:0,cuda:1,...|auto",
        help="one device per subprocess worker (each sees only its GPU); auto: every visible GPU; "
        "a repeated name puts several workers on one GPU, cpu a worker without one "
        "(default: none, every worker on the default device)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel workers (subprocess and slurm executors) (default: the number of --devices, else 1)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, what is done and a time estimate")
    p.add_argument("--list", action="store_true", help="with --dry-run: list every run")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again (default: skip them)")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="redo complete runs made from other data than now (default: refuse to mix them)",
    )
    p.add_argument(
        "--params",
        default="default",
        help="hyper-parameters: default (registry + profile), tuned (best trial of each model's study), "
        "or a JSON file {model: {param: value}}",
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage for --params tuned (default: RESULTS/tuning.db)"
    )
    p.add_argument(
        "--pretrain-source", default=None, help="dataset SSL pre-training uses (default: per benchmark)"
    )
    p.add_argument(
        "--ssl-all-models", action="store_true", help="pre-train every model, not only those tagged ssl"
    )
    p.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    p.add_argument(
        "--stale-after", type=float, default=600.0, help="seconds after which a silent claim is stale"
    )
    g = p.add_argument_group("slurm executor (submitit)")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job")
    g.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job")
    g.add_argument("--slurm-cpus", type=int, default=4, help="CPUs per job")
    g.add_argument(
        "--slurm-mem", type=float, default=None, help="GB of memory per job (default: the cluster's)"
    )
    g.add_argument(
        "--slurm-cluster",
        default=None,
        help="submitit backend: slurm, local or debug (default: slurm where available, else local)",
    )
    g.add_argument("--detach", action="store_true", help="submit and return (follow with `bench3d2d status`)")
    p.set_defaults(func=run)

    # No help=: run-one is for the executors' workers and stays out of the command list.
    q = subparsers.add_parser(
        "run-one", description="Run one stored run or pre-training (used by the executors' workers)."
    )
    q.add_argument("results", help="results folder")
    q.add_argument("id", help="run id (RESULTS/runs/ID) or, with --pretrain, pre-training key")
    q.add_argument("--pretrain", action="store_true", help="ID is a pre-training key")
    q.add_argument("--json", action="store_true", help="print the outcome as one JSON line")
    q.add_argument(
        "--stale-after", type=float, default=600.0, help="seconds after which a silent claim is stale"
    )
    q.set_defaults(func=run_one_command)

    s = subparsers.add_parser("status", help="done, failed, running and pending runs of a results folder")
    s.add_argument("results", nargs="?", default="results", help="results folder")
    s.add_argument("--failed", action="store_true", help="list every failed run with its error")
    s.add_argument("--json", action="store_true", help="print JSON for scripts")
    s.add_argument(
        "--verify",
        action="store_true",
        help="check complete runs' cases, predictions and checkpoints against the checksums in their "
        "result.json; list what is damaged and exit 1 if anything is (default: off)",
    )
    s.add_argument("--repair", action="store_true", help="run exactly the damaged runs again (default: off)")
    s.set_defaults(func=status_command)


def _hparams_for(args: argparse.Namespace):
    """The ``hparams_for`` callback of ``expand_plan`` for ``--params``."""
    choice = args.params
    if choice == "default":
        return None
    if choice == "tuned":
        from bench3d2d.harness.tune import best_params

        def tuned(model: str, bench: Any, fraction: float, profile: str) -> dict:
            return best_params(model, bench.train_dataset, fraction, profile, args.storage, args.out)

        return tuned
    table = read_params_file(Path(choice))

    def from_file(model: str, bench: Any, fraction: float, profile: str) -> dict:
        return params_for(table, model)

    return from_file


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """The ``--params`` JSON file: ``{model or wildcard: {param: value}}``; a malformed file is one error."""
    if not path.is_file():
        raise FileNotFoundError(f"--params {str(path)!r}: not 'default', 'tuned' or an existing JSON file")
    try:
        table = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"--params {path}: not valid JSON ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"--params {path}: expected an object {{model: {{param: value}}}}")
    return table


def params_for(table: Mapping[str, Mapping[str, Any]], model: str) -> dict[str, Any]:
    """A model's overrides: every matching wildcard key (``"*"``, ``"ipn*"``) in file order, then its
    own name's entry over them."""
    from fnmatch import fnmatchcase

    values: dict[str, Any] = {}
    for key, entry in table.items():
        if key != model and fnmatchcase(model, key):
            values.update(entry)
    return {**values, **dict(table.get(model, {}))}


def params_key_problems(path: str, table: Mapping[str, Any], models: list[str]) -> list[str]:
    """``--params`` keys that name no model of the plan (with a did-you-mean)."""
    import difflib
    from fnmatch import fnmatchcase

    problems = []
    for key in table:
        if not any(fnmatchcase(m, key) for m in models):
            close = difflib.get_close_matches(key, models, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (planned: {', '.join(models)})"
            problems.append(f"--params {path}: {key!r} matches no model of the plan{hint}")
    return problems


def _fmt_seconds(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _plan(args: argparse.Namespace):
    from bench3d2d.harness.sweep import PlanOptions, expand_plan

    options = PlanOptions(hparams_for=_hparams_for(args), pretrain_source=args.pretrain_source,
                          ssl_all_models=args.ssl_all_models, recipe=args.recipe,
                          recipe_tables=tuple(args.recipes))  # fmt: skip
    return expand_plan(args.models, args.fractions, args.datasets, args.pretrain, args.seeds, args.profile,
                       options)  # fmt: skip


def estimate_lines(plan: Any, work: Any, store: Any, jobs: int) -> list[str]:
    """The estimate per model: runs and pre-trainings to do and their estimated compute seconds."""
    from bench3d2d.harness.sweep import item_seconds

    runs, pres, _ = item_seconds(work, store, jobs)
    per: dict[str, list[float]] = {}
    for spec in work.runs:
        per.setdefault(spec.model, [0, 0.0])
        per[spec.model][0] += 1
        per[spec.model][1] += runs[spec.run_id]
    for pre in work.pretrainings:
        per.setdefault(pre.model, [0, 0.0])
        per[pre.model][1] += pres[pre.key]
    pre_models = {p.model for p in work.pretrainings}
    return [
        f"  {model}: {int(n)} run(s){' + pre-training' if model in pre_models else ''}, "
        f"{_fmt_seconds(secs)} of compute"
        for model, (n, secs) in sorted(per.items(), key=lambda kv: -kv[1][1])
    ]


def check_plan(plan: Any, args: argparse.Namespace) -> list[str]:
    """Everything about the plan that is known to fail before any training: ``--params`` keys and
    values, and the datasets (columns, rows, files, patients, the images SSL pre-training needs)."""
    from bench3d2d.harness._checks import plan_problems

    problems = []
    if args.params not in ("default", "tuned"):
        models = sorted({s.model for s in plan.runs})
        problems += params_key_problems(args.params, read_params_file(Path(args.params)), models)
    return problems + plan_problems(plan)


def print_plan(
    plan: Any, store: Any, jobs: int, retry_failed: bool, listing: bool = False, devices: Sequence[str] = ()
) -> None:
    """The ``--dry-run`` summary: sizes, what is done, what will run, a time estimate."""
    from collections import Counter

    from bench3d2d.harness.sweep import estimate_seconds, select_work

    work = select_work(plan, store, retry_failed=retry_failed)
    benches = Counter(s.benchmark for s in plan.runs)
    models = sorted({s.model for s in plan.runs})
    print(f"plan: {len(plan.runs)} runs ({', '.join(f'{b}: {n}' for b, n in benches.items())}), "
          f"{len(models)} models, {len(plan.pretrainings)} SSL pre-trainings")  # fmt: skip
    print(f"results folder: {store.root}")
    policy = "retried" if retry_failed else "skipped; --retry-failed runs them"
    print(f"runs: {len(work.complete)} complete, {len(work.failed_skipped)} failed ({policy}), "
          f"{len(work.runs)} to run")  # fmt: skip
    print(f"pre-trainings: {len(work.pretrain_complete)} cached, {len(work.pretrainings)} to run")
    if work.changed:
        print(f"changed data: {len(work.changed)} complete run(s) or pre-training(s) were made from other "
              "data than now; `run` refuses them, --rerun-changed redoes exactly those")  # fmt: skip
    seconds, how = estimate_seconds(work, store, jobs=jobs, devices=devices)
    on = f" on {len(set(devices))} device(s)" if devices else ""
    print(f"estimated wall time: {_fmt_seconds(seconds)} with {jobs} worker(s){on} (from {how})")
    for line in estimate_lines(plan, work, store, jobs):
        print(line)
    for note in plan.notes:
        print(f"note: {note}")
    for model, recipe in plan.recipes.items():
        print(f"recipe: {model} trains with {recipe.describe()}")
    if listing:
        todo = {s.run_id for s in work.runs}
        for spec in plan.runs:
            mark = "todo" if spec.run_id in todo else store.state(spec.run_id).value
            recipe = plan.recipes.get(spec.model)
            label = spec.label(recipe.describe() if recipe is not None else None)
            print(f"  {spec.run_id}  {mark:10s} {spec.benchmark:4s} {label}")


def untuned_refusal(plan: Any, args: argparse.Namespace) -> str | None:
    """Why the plan may not run as asked (models without a tuned entry under ``--recipe tuned``, when
    the others train with tuned recipes), with what to do; None when it may."""
    if not plan.untuned or args.allow_untuned:
        return None
    names = ",".join(plan.untuned)
    got = "; ".join(f"{m}: {plan.recipes[m].describe()}" for m in plan.untuned)
    return (
        f"no tuned recipe for {names} under --recipe tuned ({got}), while the other models train with "
        f"tuned recipes. Tune it with the shipped table's budget: `bench3d2d tune --models {names} "
        "--write-recipes my_recipes.json` (with the same --plugin), then run with --recipes "
        "my_recipes.json; or pass --allow-untuned to compare it untuned anyway"
    )


def slurm_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """submitit's parameters from the ``--slurm-*`` options: one GPU per job unless told otherwise."""
    params: dict[str, Any] = {
        "timeout_min": args.slurm_time,
        "gpus_per_node": args.slurm_gpus,
        "cpus_per_task": args.slurm_cpus,
    }
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_mem:
        params["mem_gb"] = args.slurm_mem
    return params


def run(args: argparse.Namespace) -> int:
    """Plan and run (or, with --dry-run, describe) a sweep."""
    from bench3d2d.harness.executors import SweepProgress, make_executor
    from bench3d2d.harness.sweep import ResultsStore, contract_problems, get_backend, parse_devices, run_sweep

    get_backend()  # fail fast; a site backend may register models and profiles on import
    store = ResultsStore(args.out, stale_after=args.stale_after)
    devices = parse_devices(args.devices)
    executor = make_executor(
        args.executor or ("subprocess" if devices else "local"),
        jobs=args.jobs,
        devices=devices,
        cluster=args.slurm_cluster,
        parameters=slurm_parameters(args),
        wait=not args.detach,
    )  # before planning: a bad --devices or --jobs fails at once, --dry-run included
    plan = _plan(args)
    problems = check_plan(plan, args)
    refusals = [r for r in (untuned_refusal(plan, args),) if r] + contract_problems(plan)
    if args.dry_run:
        print_plan(plan, store, executor.jobs, args.retry_failed, args.list, devices)
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    for refusal in refusals:
        print(f"bench3d2d: error: {refusal}", file=sys.stderr)
    if problems:
        print(f"bench3d2d: error: {len(problems)} problem(s) found before any training; nothing was run "
              "(`bench3d2d data check PATH` lists every problem of a dataset)", file=sys.stderr)  # fmt: skip
    if problems or refusals:
        return 2
    if args.dry_run:
        return 0
    if not plan.runs:
        print("nothing to run: the plan is empty", file=sys.stderr)
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    progress = SweepProgress(total=0, enabled=False if args.no_progress else None)
    from bench3d2d.harness.sweep import select_work

    work = select_work(plan, store, retry_failed=args.retry_failed, rerun_changed=args.rerun_changed)
    progress.total = len(work.runs) + len(work.pretrainings)
    print(
        f"sweep: {len(plan.runs)} runs, {len(plan.pretrainings)} pre-trainings; "
        f"{len(work.complete)} runs already complete, {len(work.runs)} runs and "
        f"{len(work.pretrainings)} pre-trainings to do -> {store.root}",
        file=sys.stderr,
    )
    report = run_sweep(plan, store, executor=executor, retry_failed=args.retry_failed, progress=progress,
                       rerun_changed=args.rerun_changed)  # fmt: skip
    failed = report.failed
    print(
        f"done in {_fmt_seconds(report.seconds)}: {report.count('complete')} runs completed, "
        f"{report.skipped_complete} already complete, {report.count('failed')} failed, "
        f"{report.count('busy')} busy (another worker), {report.skipped_failed} failed earlier (skipped); "
        f"pre-trainings: {report.count('complete', 'pretrain')} done, "
        f"{report.count('failed', 'pretrain')} failed",
        file=sys.stderr,
    )
    warn_damaged(report.damaged, store.root)
    for o in failed:
        print(f"failed {o.kind} {o.id} ({o.label}): {o.error}", file=sys.stderr)
    if failed:
        print(f"see `bench3d2d status {store.root} --failed`", file=sys.stderr)
    return 1 if failed else 0


def warn_damaged(damaged: list[Any], root: Path) -> None:
    """One warning line per damaged complete run or pre-training, then what to do about them."""
    for item in damaged:
        more = f" (and {len(item.problems) - 1} more)" if len(item.problems) > 1 else ""
        print(f"warning: damaged {item.kind} {item.id}: {item.problems[0]}{more}", file=sys.stderr)
    if damaged:
        print(f"warning: {len(damaged)} complete run(s) or pre-training(s) are damaged and were not redone; "
              f"`bench3d2d status {root} --repair` runs exactly those again", file=sys.stderr)  # fmt: skip


def run_one_command(args: argparse.Namespace) -> int:
    """Run one stored run (or pre-training) by id; exit 1 if it failed."""
    from bench3d2d.engine.acceleration import retain_freed_memory

    retain_freed_memory()  # fewer page faults: 7-30 % less CPU per step (docs/performance.md)
    from bench3d2d.harness.executors import work_by_id

    outcome = work_by_id(args.results, "pretrain" if args.pretrain else "run", args.id, args.stale_after)
    if args.json:
        print(json.dumps(asdict(outcome)), flush=True)
    else:
        print(f"{outcome.status} {outcome.kind} {outcome.id} {outcome.label} {outcome.error}".rstrip())
    return 1 if outcome.status == "failed" else 0


def status_summary(results: str | Path) -> dict[str, Any]:
    """Counts by state, per-benchmark/model breakdown, failed runs and pre-trainings of a results folder."""
    from bench3d2d.harness._store import ResultsStore
    from bench3d2d.harness.sweep import pretrain_state, read_pretrain_spec

    store = ResultsStore(results)
    if not store.root.is_dir():
        raise FileNotFoundError(f"results folder not found: {store.root}")
    table = store.table()
    states = ["complete", "failed", "running", "incomplete", "pending"]
    counts = {s: int((table["state"] == s).sum()) for s in states}
    groups = []
    if not table.empty:
        for (bench, model, pre), part in table.groupby(["benchmark", "model", "pretrain"], sort=True):
            groups.append({"benchmark": bench, "model": model, "pretrain": pre,
                           **{s: int((part["state"] == s).sum()) for s in states}})  # fmt: skip
    pretrain = {s: 0 for s in states}
    if store.pretrain_dir.is_dir():
        for folder in sorted(store.pretrain_dir.iterdir()):
            try:
                pre = read_pretrain_spec(store, folder.name)
            except (FileNotFoundError, ValueError):
                continue
            pretrain[pretrain_state(pre, store).value] += 1
    failed = table[table["state"] == "failed"][["run_id", "model", "pretrain", "fraction", "seed", "error"]]
    done = table[table["state"] == "complete"]["seconds"].dropna()
    return {
        "results": str(store.root),
        "total": len(table),
        "runs": counts,
        "pretrainings": pretrain,
        "groups": groups,
        "failed": failed.to_dict(orient="records"),
        "run_seconds_median": float(done.median()) if len(done) else None,
        "run_seconds_total": float(done.sum()) if len(done) else 0.0,
    }


def verify_command(args: argparse.Namespace) -> int:
    """``status --verify`` / ``--repair``: name damaged artefacts; re-run them with --repair."""
    from bench3d2d.harness.sweep import ResultsStore, repair

    store = ResultsStore(args.results)
    if not store.root.is_dir():
        raise FileNotFoundError(f"results folder not found: {store.root}")
    damaged = store.verify()
    for item in damaged:
        for problem in item.problems:
            print(f"damaged {item.kind} {item.id}: {problem}")
    if not damaged:
        print(f"{store.root}: every complete run and pre-training matches its checksums")
        return 0
    if not args.repair:
        print(f"{len(damaged)} damaged; `bench3d2d status {store.root} --repair` runs exactly those again")
        return 1
    outcomes = repair(store, damaged)
    for o in outcomes:
        print(f"repaired {o.kind} {o.id}: {o.status}{' ' + o.error if o.error else ''}")
    return 0 if all(o.status == "complete" for o in outcomes) and not store.verify() else 1


def status_command(args: argparse.Namespace) -> int:
    """Print done, failed, running, incomplete and pending runs."""
    if args.verify or args.repair:
        return verify_command(args)
    summary = status_summary(args.results)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=160)
    c = summary["runs"]
    console.print(
        f"{summary['results']}: {summary['total']} runs — {c['complete']} complete, {c['failed']} failed, "
        f"{c['running']} running, {c['incomplete']} incomplete (resume on the next `run`), "
        f"{c['pending']} pending"
    )
    p = summary["pretrainings"]
    console.print(
        f"SSL pre-trainings: {p['complete']} complete, {p['failed']} failed, {p['running']} running, "
        f"{p['incomplete'] + p['pending']} not done"
    )
    if summary["run_seconds_median"] is not None:
        console.print(
            f"run time: median {summary['run_seconds_median']:.1f} s per run, "
            f"{_fmt_seconds(summary['run_seconds_total'])} in total"
        )
    if summary["groups"]:
        table = Table()
        for col in (
            "benchmark",
            "model",
            "pretrain",
            "complete",
            "failed",
            "running",
            "incomplete",
            "pending",
        ):
            table.add_column(col)
        for g in summary["groups"]:
            table.add_row(*(str(g[k]) for k in ("benchmark", "model", "pretrain", "complete", "failed",
                                                 "running", "incomplete", "pending")))  # fmt: skip
        console.print(table)
    failed = summary["failed"]
    shown = failed if args.failed else failed[:5]
    for row in shown:
        text = f"{row['run_id']} {row['model']} {row['pretrain']} {row['fraction']:g}% seed {row['seed']}"
        console.print(f"[red]failed[/red] {escape(text)}: {escape(str(row['error']))}", highlight=False)
    if len(failed) > len(shown):
        console.print(f"... {len(failed) - len(shown)} more failed runs (--failed lists all)")
    return 0
