"""``bench3d2d models``: the registered models as a table or JSON."""

from __future__ import annotations

import argparse
import json

from bench3d2d.commands._options import add_list_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser("models", help="list the registered models")
    add_list_option(
        p,
        "pattern",
        default=["*"],
        allow_empty=True,
        metavar="PATTERN,...",
        help="fnmatch patterns of model names, comma-separated",
    )
    p.add_argument("--depth", type=int, default=128, help="input depth used to count parameters")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=run)


def describe_models(patterns: list[str], depth: int = 128) -> list[dict]:
    """Registry metadata plus the parameter count (1 -> 1 channels) of each matching model."""
    from bench3d2d.models import count_parameters, create_model, list_models, model_info

    rows = []
    for name in list_models(patterns):
        row = model_info(name).to_dict()
        try:
            row["parameters"] = count_parameters(create_model(name, depth=depth))
            row["depth"] = depth
        except Exception as exc:  # a model that cannot be built at this depth is still listed
            row["parameters"] = None
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    rows = describe_models(args.pattern, args.depth)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Registered models (parameters for 1 -> 1 channels at depth {args.depth})")
    for col in ("name", "parameters", "constraints", "reduction to 2-D", "paper"):
        table.add_column(col, overflow="fold")
    for row in rows:
        params = f"{row['parameters']:,}" if row["parameters"] is not None else row.get("error", "-")
        table.add_row(row["name"], params, row["constraints_text"], row["reduction"], row["paper"])
    Console(width=200).print(table)
    return 0
