"""``bench3d2d compare A B``: which verdicts differ between two boards or results folders."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from bench3d2d.commands._options import add_list_option
from bench3d2d.evaluation.statistics import HEADLINE_METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    p = subparsers.add_parser(
        "compare",
        help="compare two boards or results folders: best entries, significance marks, moved means",
        description="Match the entries of two boards (folders with summary.csv), results folders or per-case "
        "tables, and list the families whose best entry differs, the entries whose mark against the best "
        "differs and the entries whose mean moves by more than --threshold. Exit status 1 when anything "
        "differs, 0 when the verdicts agree (e.g. a rerun on another machine, thread count or precision).",
    )
    p.add_argument("a", help="board folder, results folder or per-case table (the reference)")
    p.add_argument("b", help="board folder, results folder or per-case table (compared with A)")
    p.add_argument("--threshold", type=float, default=0.03, help="largest allowed move of a mean Dice")
    add_list_option(
        p,
        "--metrics",
        default=HEADLINE_METRICS,
        metavar="METRIC,...",
        help="metric families to compare, comma-separated",
    )
    p.add_argument("--all", action="store_true", help="also print every matched entry with its two means")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=run)


def _show(title: str, table: pd.DataFrame) -> None:
    print(f"{title}: {len(table)}")
    if not table.empty:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def run(args: argparse.Namespace) -> int:
    """Print the differences; exit status 1 when any verdict differs."""
    from bench3d2d.report.compare import compare

    result = compare(args.a, args.b, threshold=args.threshold, metrics=tuple(args.metrics))
    parts = {
        "best": result.best,
        "significance": result.significance,
        "means": result.means,
        "only": result.only,
    }
    if args.json:
        out = {k: json.loads(v.to_json(orient="records")) for k, v in parts.items()}
        print(json.dumps({**out, "differs": result.differs}, indent=2))
        return 1 if result.differs else 0
    print(f"A: {args.a}\nB: {args.b}")
    _show("families whose best entry differs", result.best)
    _show("entries whose mark against the best differs", result.significance)
    _show(f"entries whose mean Dice moves by more than {args.threshold}", result.means)
    _show("entries on one side only", result.only)
    if args.all:
        _show("matched entries", result.matched)
    print("verdicts differ" if result.differs else "verdicts agree")
    return 1 if result.differs else 0
