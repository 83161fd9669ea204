"""``bench3d2d train`` (one run: fine-tune and test) and ``bench3d2d pretrain`` (SSL weights)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench3d2d._console import log_to_terminal
from bench3d2d._defaults import DEFAULT_RECIPE
from bench3d2d.commands._options import add_list_option, add_profile_option

DEFAULT_CACHE = ".bench3d2d-cache"


def _hparam(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value when it parses (``lr=0.01``, ``crop=[16,64]``), else text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _tables(args: argparse.Namespace) -> tuple[str, ...]:
    """``--recipes`` files as absolute paths; a missing one is an error naming it, before any work."""
    from bench3d2d.engine.recipes import load_tuned

    tables = tuple(str(Path(t).expanduser().resolve()) for t in args.recipes)
    for table in tables:
        load_tuned(table, must_exist=True)
    return tables


def _common(p: argparse.ArgumentParser) -> None:
    add_profile_option(p)
    p.add_argument(
        "--recipe",
        default=DEFAULT_RECIPE,
        choices=["common", "official", "tuned"],
        help="recipe set (the model's optimiser settings): common, official or tuned",
    )
    p.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="FILE",
        help="a tuned recipe table of your own (`bench3d2d tune --write-recipes FILE`), layered over the "
        "shipped one; repeatable, the last given wins (default: the shipped table only)",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="prepared-data cache")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument(
        "--accelerate",
        default="auto",
        choices=["auto", "on", "off"],
        help="CPU convolution speed-ups (accelerate): auto = on CPU only (default auto)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no log lines on the terminal")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``pretrain`` sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="train one model on a label fraction and test it (top-k ensemble)",
        description="Fine-tune (or train from scratch) one model on a fraction of a dataset's training "
        "patients, keep the top-k checkpoints by validation Dice, and print the per-case metrics "
        "summary of the ensemble on the test split. Resumes when run again with the same arguments.",
    )
    p.add_argument("--model", required=True, help="registered model name (see `bench3d2d models`)")
    p.add_argument("--dataset", required=True, help="registered dataset name or manifest path")
    p.add_argument("--fraction", default="100", help="label fraction in percent")
    p.add_argument(
        "--pretrain",
        default="none",
        choices=["none", "slo", "faf"],
        help="start from SSL weights reconstructing this modality",
    )
    p.add_argument(
        "--pretrain-source",
        default=None,
        help="dataset for SSL pre-training (default: the dataset's registry metadata)",
    )
    p.add_argument(
        "--pretrain-dir", default=None, help="where SSL weights are cached (default: CACHE/pretrain)"
    )
    add_list_option(
        p,
        "--test-sets",
        default=[],
        allow_empty=True,
        metavar="DATASET,...",
        help="further datasets to test on, used whole, comma-separated",
    )
    p.add_argument(
        "--hparam",
        action="append",
        type=_hparam,
        default=[],
        metavar="KEY=VALUE",
        help="override a profile setting (lr, weight_decay, optimizer, batch_size, rounds, ...)",
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, log.txt, cases.csv, split.json)")
    _common(p)
    p.set_defaults(func=run_train)

    q = subparsers.add_parser(
        "pretrain",
        help="SSL pre-training: reconstruct SLO or FAF from the OCT (cached)",
        description="Train a model to reconstruct SLO or inverted FAF from the OCT volume on a source "
        "dataset's train/val split (test patients of the same cohort excluded), and cache the weights of "
        "the best validation SSIM for fine-tuning.",
    )
    q.add_argument("--model", required=True, help="registered model name")
    q.add_argument("--source", required=True, help="dataset with SLO/FAF images (e.g. synthetic-ga-m)")
    q.add_argument("--modality", required=True, choices=["slo", "faf"], help="reconstruction target")
    add_list_option(
        q,
        "--exclude",
        default=None,
        allow_empty=True,
        metavar="DATASET,...",
        help="datasets whose patients stay out, comma-separated (default: the source's test views)",
    )
    q.add_argument("--out", default=None, help="pre-training root folder (default: CACHE/pretrain)")
    _common(q)
    q.set_defaults(func=run_pretrain)


def _compute(args: argparse.Namespace):
    """The :class:`~bench3d2d.engine.Compute` settings of the command line."""
    from bench3d2d.engine import Compute

    accelerate = {"auto": None, "on": True, "off": False}[args.accelerate]
    return Compute(
        device=args.device, threads=args.threads, accelerate=accelerate, progress=not args.no_progress
    )


def _fmt(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.4f}"


def run_train(args: argparse.Namespace) -> int:
    """Run ``engine.train_and_evaluate`` and print the summary table."""
    from bench3d2d.engine.acceleration import retain_freed_memory

    retain_freed_memory()  # fewer page faults: 7-30 % less CPU per step (docs/performance.md)
    from bench3d2d._io import remove_stale_temps, removed_on_failure
    from bench3d2d.engine import NonFiniteLossError, RunPaths, RunSettings, RunTarget, train_and_evaluate

    log_to_terminal(args.quiet)
    remove_stale_temps(args.out)  # left by a killed earlier attempt
    try:
        with removed_on_failure(Path(args.out)):  # a failed run leaves no empty folder behind
            result = train_and_evaluate(
                RunTarget(
                    args.model,
                    args.dataset,
                    args.test_sets,
                    fraction=args.fraction,
                    seed=args.seed,
                    pretrain=args.pretrain,
                    pretrain_source=args.pretrain_source,
                ),
                RunSettings(
                    profile=args.profile,
                    recipe=args.recipe,
                    hparams=dict(args.hparam),
                    compute=_compute(args),
                    recipe_tables=_tables(args),
                ),
                RunPaths(Path(args.out), Path(args.cache_dir), args.pretrain_dir),
            )
    except NonFiniteLossError as exc:
        print(f"bench3d2d: error: {exc}", file=sys.stderr)
        return 1
    summary = result.summary()
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{args.model} ({args.pretrain}) on {args.dataset}, {args.fraction} % labels, "
        f"seed {args.seed}, top-{result.extra['k']} ensemble"
    )
    for col in ("test set", "metric", "n", "NaN", "mean", "std", "median"):
        table.add_column(col, justify="left" if col in ("test set", "metric") else "right")
    for row in summary.itertuples(index=False):
        table.add_row(
            row.test_set,
            row.metric,
            str(row.n),
            str(row.n_nan),
            _fmt(row.mean),
            _fmt(row.std),
            _fmt(row.median),
        )
    Console(width=120).print(table)
    t = result.timings
    print(
        f"time: {t['total_s']:.1f} s (fit {t['fit_s']:.1f} s, evaluation {t['evaluate_s']:.1f} s"
        + (f", pre-training {t['pretrain_s']:.1f} s" if "pretrain_s" in t else "")
        + ")"
    )
    print(f"per-case metrics: {Path(args.out) / 'cases.csv'}")
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    """Run ``ssl.pretrain`` and print where the weights are."""
    from bench3d2d.engine.acceleration import retain_freed_memory

    retain_freed_memory()  # fewer page faults: 7-30 % less CPU per step (docs/performance.md)
    from bench3d2d.engine import NonFiniteLossError, PretrainTarget, ssl

    log_to_terminal(args.quiet)
    root = Path(args.out) if args.out else Path(args.cache_dir) / "pretrain"
    what = PretrainTarget(args.model, args.source, args.modality, seed=args.seed, exclude=args.exclude,
                          recipe=args.recipe, recipe_tables=_tables(args))  # fmt: skip
    try:
        res = ssl.pretrain(
            what, profile=args.profile, compute=_compute(args), root=root, cache_dir=Path(args.cache_dir)
        )
    except NonFiniteLossError as exc:
        print(f"bench3d2d: error: {exc}", file=sys.stderr)
        return 1
    state = "reused (cached)" if res.cached else f"trained in {res.seconds:.1f} s"
    print(
        f"pre-trained {args.model} on {args.source} -> {args.modality}: validation SSIM {res.score:.4f}, "
        f"{state}"
    )
    print(f"weights: {res.weights}")
    return 0
