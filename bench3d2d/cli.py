"""The ``bench3d2d`` command: one sub-command per module in ``bench3d2d/commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def command_modules() -> list[str]:
    """Modules of ``bench3d2d.commands``; each defines ``register(subparsers)``."""
    import bench3d2d.commands as commands

    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command."""
    from bench3d2d import __version__

    parser = argparse.ArgumentParser(
        prog="bench3d2d",
        description="Benchmark 3D-to-2D segmentation networks (OCT volume in, en-face map out).",
    )
    parser.add_argument("--version", action="version", version=f"bench3d2d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"bench3d2d.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (LookupError, ValueError, FileNotFoundError) as exc:
        # User errors (unknown names, bad input files): one clear line, no traceback.
        print(f"bench3d2d: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
