"""The terminal and the log: one logging set-up and one progress-bar factory for every layer.

Private, at the bottom of the layer contract beside ``_io`` (it imports nothing of the library),
so the engine's training bar, the harness's sweep display and the commands share one copy.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["LOGGER", "log_to_file", "log_to_terminal", "progress_bar"]

#: The library's root logger; every module logs to a child of it.
LOGGER = "bench3d2d"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_terminal(quiet: bool = False) -> None:
    """Show the library's INFO lines on stderr (once, however often it is called); nothing if ``quiet``."""
    if quiet:
        return
    logger = logging.getLogger(LOGGER)
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        for h in logger.handlers
    ):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def log_to_file(path: str | Path | None) -> Iterator[None]:
    """Append the library's log records to ``path`` for the duration of the block.

    Nested blocks for the same file write each line once (the outer handler serves both); the file
    gets INFO and above, and the logger's level is lowered to INFO while the block runs and restored
    after. ``None``: no file.
    """
    if path is None:
        yield
        return
    logger = logging.getLogger(LOGGER)
    path = Path(path).resolve()
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in logger.handlers):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handler.setLevel(logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def progress_bar(*fields: str, stream: IO[str] | None = None) -> Any:
    """A ``rich.progress.Progress`` (not started): description, bar, n/total, ``fields``, times.

    ``fields`` are extra text columns in rich's template syntax (e.g.
    ``"loss {task.fields[loss]}"``), shown between the count and the elapsed time. The display
    goes to ``stream`` (default stderr). rich is imported here, on first use only.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream or sys.stderr),
    )
