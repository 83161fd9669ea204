"""``bench3d2d models``: the registered models as a table or JSON; ``--check``: the tensor contract."""

from __future__ import annotations

import argparse
import json

from bench3d2d._defaults import DEFAULT_PROFILE
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
    p.add_argument(
        "--check",
        action="store_true",
        help="check each matching model against the tensor contract at the --profile's input size (output "
        "shape and dtype, logits, gradients, its size rule); one line per model, exit 1 if any fails",
    )
    p.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="with --check: the profile whose depth and crop to use"
    )
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


def check_models(patterns: list[str], profile: str) -> dict[str, list[str]]:
    """``{model: broken rules}`` of the matching models at the profile's depth and crop (empty: obeys)."""
    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.models import contract_problems, list_models

    prof = get_profile(profile)
    names = list_models(patterns)
    if not names:
        raise LookupError(f"no registered model matches {', '.join(patterns)}")
    return {name: contract_problems(name, *prof.crop, prof.depth) for name in names}


def run_check(args: argparse.Namespace) -> int:
    """``models --check``: one line per model; exit 1 when any breaks the contract."""
    from bench3d2d.engine.profiles import get_profile

    prof = get_profile(args.profile)
    results = check_models(args.pattern, args.profile)
    if args.json:
        print(json.dumps({"profile": prof.name, "problems": results}, indent=2))
    for name, problems in results.items() if not args.json else ():
        if problems:
            print(f"model {name!r} breaks the tensor contract: {'; '.join(problems)}")
        else:
            print(f"model {name!r} obeys the tensor contract (profile {prof.name}: depth {prof.depth}, crop "
                  f"{prof.crop[0]} x {prof.crop[1]})")  # fmt: skip
    return 1 if any(results.values()) else 0


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON), or with ``--check`` the contract check."""
    if args.check:
        return run_check(args)
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
