"""``bench3d2d report RESULTS --out DIR``: leaderboard tables, statistics, figures and writers."""

from __future__ import annotations

import argparse
import shlex
import sys

from bench3d2d.commands._options import add_list_option
from bench3d2d.evaluation.statistics import HEADLINE_METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="write the leaderboard of a results folder (Markdown, HTML, CSV/JSON, LaTeX, figures)",
        description="Read a results folder of `bench3d2d run` (or one per-case CSV/Parquet table, or a "
        "published board folder), or several of them, and write README.md, index.html, leaderboard.tex, "
        "CSV/JSON tables and figures into --out. Several sources make one board from their union (seeds or "
        "datasets run on different machines or days); a case row two sources disagree on is an error.",
    )
    p.add_argument(
        "results",
        nargs="+",
        help="results folder (with runs/), a per-case .csv/.parquet table, or a board folder (cases.csv); "
        "several: one board from their union",
    )
    p.add_argument("--out", required=True, help="output folder (created; existing report files are replaced)")
    p.add_argument("--title", default=None, help="report title (default: the results folder's name)")
    p.add_argument("--note", default="", help="a paragraph shown under the title (what the board is)")
    add_list_option(
        p,
        "--metrics",
        default=HEADLINE_METRICS,
        metavar="METRIC,...",
        help="metrics of the main tables and figures, comma-separated",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm")
    p.add_argument("--bootstrap", type=int, default=9999, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--unit",
        choices=("patient", "case"),
        default="patient",
        help="unit of analysis of tests and intervals: patient (scans of a patient averaged, "
        "cluster bootstrap) or case (every scan independent)",
    )
    p.add_argument(
        "--overlay-cases",
        type=int,
        default=3,
        help="example cases per test set and fraction in the overlay figures (0: none)",
    )
    add_list_option(
        p,
        "--formats",
        default=None,
        metavar="FORMAT,...",
        help="comma-separated subset of md,html,csv,json,latex (default: all)",
    )
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument(
        "--allow-damaged",
        action="store_true",
        help="report runs whose files differ from their checksums, with a warning "
        "(default: refuse and name them; `bench3d2d status --repair` fixes them)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when the results had warnings, failed or incomplete runs",
    )
    p.set_defaults(func=run)


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line that rebuilds the report (shown in it)."""
    parts = ["bench3d2d", "report", *args.results, "--out", args.out]
    if args.title:
        parts += ["--title", args.title]
    if args.note:
        parts += ["--note", args.note]
    if list(args.metrics) != list(HEADLINE_METRICS):
        parts += ["--metrics", ",".join(args.metrics)]
    for flag, value, default in (
        ("--alpha", args.alpha, 0.05),
        ("--bootstrap", args.bootstrap, 9999),
        ("--seed", args.seed, 0),
        ("--overlay-cases", args.overlay_cases, 3),
        ("--unit", args.unit, "patient"),
    ):
        if value != default:
            parts += [flag, str(value)]
    if args.formats:
        parts += ["--formats", ",".join(args.formats)]
    if args.no_figures:
        parts.append("--no-figures")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Build the report and print where it went, the warnings and the failed runs."""
    from bench3d2d.report.build import build_report
    from bench3d2d.report.model import FORMATS, ReportOptions

    options = ReportOptions(
        title=args.title,
        metrics=tuple(args.metrics),
        alpha=args.alpha,
        bootstrap_resamples=args.bootstrap,
        seed=args.seed,
        unit=args.unit,
        overlay_cases=args.overlay_cases,
        figures=not args.no_figures,
        formats=tuple(args.formats) if args.formats else FORMATS,
        command=reproduce_command(args),
        note=args.note,
    )
    from bench3d2d._io import remove_stale_temps
    from bench3d2d.report.collect import refuse_damaged

    damage = [w for source in args.results for w in refuse_damaged(source, args.allow_damaged)]
    remove_stale_temps(args.out)  # left by a killed report
    report = build_report(args.results, args.out, options)
    for w in damage + report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    coll = report.collection
    for run_ in coll.runs_with("failed"):
        print(f"failed run {run_.run_id}: {run_.to_row()['error']}", file=sys.stderr)
    n_bad = len(coll.runs) - len(coll.runs_with("complete"))
    print(
        f"report of {len(coll.runs_with('complete'))} complete run(s), {len(report.sections)} board(s), "
        f"{len(report.files)} file(s) in {args.out}"
        + (f"; {n_bad} run(s) not complete, {len(report.warnings)} warning(s)" if report.warnings else "")
    )
    return 1 if args.strict and (report.warnings or n_bad) else 0
