"""Option helpers shared by the sub-commands: one list syntax, help that shows every default."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["HelpFormatter", "ListAction", "add_list_option", "add_profile_option"]


class ListAction(argparse.Action):
    """A list option that takes ``a,b,c`` (the documented form), ``a b c`` or a mix of both."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        """Store the flattened items, split by the sweep plan's one list parser (``split_list``)."""
        from bench3d2d.harness.sweep import split_list  # imported late: the harness is slow to import

        setattr(namespace, self.dest, split_list(values or []))


def add_list_option(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    default: Sequence[str] | None,
    help: str,
    metavar: str = "A,B",
    allow_empty: bool = False,
) -> argparse.Action:
    """Add a list option (``--models a,b``; spaces are accepted too) whose default is a list."""
    return parser.add_argument(
        *flags,
        nargs="*" if allow_empty else "+",
        action=ListAction,
        default=list(default) if default is not None else None,
        metavar=metavar,
        help=help,
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, with lists shown comma-separated and no ``(default: None)``.

    An option whose default is ``None`` says in its own help text what happens without it. A list
    option shows only its comma-separated metavar (``--models MODEL,...``), its documented form.
    """

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if isinstance(action, ListAction):
            metavar = self._metavar_formatter(action, default_metavar)(1)[0]
            return f"[{metavar}]" if action.nargs == "*" else metavar
        return super()._format_args(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or action.required
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        if isinstance(default, (list, tuple)):
            shown = ",".join(map(str, default)).replace("%", "%%") or "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def add_profile_option(p: argparse.ArgumentParser) -> None:
    """``--profile`` (default: the library's ``DEFAULT_PROFILE``), worded the same for every sub-command."""
    from bench3d2d._defaults import DEFAULT_PROFILE

    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="training profile: standard (the benchmark: 400 steps, the learning rate decayed over the "
        "last quarter, top-3 of that quarter), smoke (a pipeline check in minutes, not a benchmark) or "
        "paper (the published protocol)",
    )
