"""The ``bench3d2d`` command: one module of sub-commands each in ``bench3d2d/commands``.

Sub-commands are listed in workflow order (models, data, train, pretrain, run, status, tune,
report, compare); ``run-one``, which the executors start, is hidden. ``--plugin MODULE_OR_FILE``
(repeatable, before or after the sub-command) and the ``BENCH3D2D_PLUGINS`` environment variable
import the user's own models for every command and for the workers a sweep starts.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path

from bench3d2d._io import disk_error_line, disk_write_error
from bench3d2d.commands._options import HelpFormatter
from bench3d2d.models import PLUGINS_ENV, PluginError, load_env_plugins, load_plugin

#: Command modules in workflow order; each registers its sub-commands in that order too
#: (train: train, pretrain; run: run, run-one (hidden), status). Others follow alphabetically.
COMMAND_MODULES = ("models", "data", "train", "run", "tune", "report", "compare")
#: ``--plugin`` values of the parser at depth N go to ``plugins<N>`` (a sub-parser's namespace would
#: otherwise overwrite the values given before the sub-command).
_PLUGIN_DEST = "plugins"


def command_modules() -> list[str]:
    """Modules of ``bench3d2d.commands`` in workflow order; each defines ``register(subparsers)``."""
    import bench3d2d.commands as commands

    found = {m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    return [m for m in COMMAND_MODULES if m in found] + sorted(found - set(COMMAND_MODULES))


def _sub_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from dict.fromkeys(action.choices.values())  # aliases point at the same parser


def walk_parsers(
    parser: argparse.ArgumentParser, depth: int = 0
) -> Iterator[tuple[argparse.ArgumentParser, int]]:
    """``parser`` and every (nested) sub-command parser, with its depth (0: the top level)."""
    yield parser, depth
    for sub in _sub_parsers(parser):
        yield from walk_parsers(sub, depth + 1)


def _add_plugin_option(parser: argparse.ArgumentParser, depth: int) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        dest=f"{_PLUGIN_DEST}{depth}",
        metavar="MODULE_OR_FILE",
        help=f"import a module or a .py file that registers models (repeatable); "
        f"{PLUGINS_ENV} lists more, separated by '{os.pathsep}'",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command."""
    from bench3d2d import __version__

    parser = argparse.ArgumentParser(
        prog="bench3d2d",
        description="Benchmark 3D-to-2D segmentation networks (OCT volume in, en-face map out).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bench3d2d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        import_module(f"bench3d2d.commands.{name}").register(subparsers)
    for sub, depth in walk_parsers(parser):
        sub.formatter_class = HelpFormatter
        _add_plugin_option(sub, depth)
    return parser


def requested_plugins(args: argparse.Namespace) -> list[str]:
    """``--plugin`` values from every level of the command line, outermost first."""
    levels = sorted((k for k in vars(args) if k.startswith(_PLUGIN_DEST) and k[len(_PLUGIN_DEST):].isdigit()),
                    key=lambda k: int(k[len(_PLUGIN_DEST):]))  # fmt: skip
    return [spec for key in levels for spec in getattr(args, key) or []]


def one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """Warnings on the command line: one line, ``warning: <message>`` (no Python source line)."""
    text = " ".join(str(message).split())
    return f"warning: {text}\n" if category is UserWarning else f"warning ({category.__name__}): {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = one_line_warning
    try:
        for spec in requested_plugins(args):
            load_plugin(spec)
        load_env_plugins()
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (LookupError, ValueError, FileNotFoundError, PluginError) as exc:
        # User errors (unknown names, bad input files, a plugin that does not import): one clear line.
        print(f"bench3d2d: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        disk = disk_write_error(exc)
        if disk is None:
            raise
        # A full or read-only disk: one line naming the file or folder and what to do.
        folder = (
            getattr(args, "out", None) or getattr(args, "results", None) or Path(disk.filename or ".").parent
        )
        print(f"bench3d2d: error: {disk_error_line(disk, folder)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
