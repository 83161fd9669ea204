"""Private file helpers: atomic writes (temporary file, fsync, ``os.replace``), safe file names,
clean-up of what a killed or failed command left behind.

A reader never sees a half-written file, and a crash leaves either the old file or the new one plus
at most a temporary ``.<name>.<host>-<pid>.<random>.tmp``, which :func:`remove_stale_temps` (called
when any command starts in that folder) removes once its writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bench3d2d._lock import temp_tag, temp_writer_alive

#: Suffix of every temporary file or folder the library writes.
TEMP_SUFFIX = ".tmp"
#: A temporary file whose writer cannot be checked (another host, or no tag) is removed after this many s.
TEMP_STALE_AFTER = 3600.0


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file for the final name ``name``: ``.<name>.<host>-<pid>.``."""
    return f".{name}.{temp_tag()}."


def make_temp_dir(final: str | os.PathLike) -> Path:
    """A new temporary folder beside ``final`` (to fill, then ``os.replace`` into place)."""
    final = Path(final)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=TEMP_SUFFIX, dir=final.parent))


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> Path:
    """Write indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")


def safe_name(name: object, limit: int = 60) -> str:
    """The file-name form of an id, unique per id: the library's one helper for per-case file names.

    Characters outside ``[A-Za-z0-9._-]`` become ``_``; a name that had to change (or is longer than
    ``limit``) gets ``~`` and 8 hex digits of the SHA-1 of the real id appended, so that two ids never
    share a file (``Иванов_OD`` and ``Петров_OD`` differ). Plain ids are kept as they are. A file
    named this way should also record its real id, and readers should look it up by id.
    """
    text = str(name)
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    if clean != text or len(clean) > limit:
        clean = f"{clean[:limit]}~{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return clean


def _is_stale_temp(entry: os.DirEntry, max_age: float) -> bool:
    alive = temp_writer_alive(entry.name)
    if alive is not None:
        return not alive
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > max_age
    except FileNotFoundError:
        return False


def remove_stale_temps(
    folder: str | os.PathLike, depth: int = 8, max_age: float = TEMP_STALE_AFTER
) -> list[Path]:
    """Remove the temporary ``.*.tmp`` files and folders under ``folder`` whose writer is gone.

    A writer on this host is gone when its process no longer runs; a temporary file of another host
    (or one without the writer's tag) when it is older than ``max_age`` seconds. Looks ``depth``
    folder levels deep and returns what it removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and _is_stale_temp(entry, max_age):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(entry.path) if is_dir else os.unlink(entry.path)
            removed.append(Path(entry.path))
        elif is_dir and depth > 1:
            removed += remove_stale_temps(entry.path, depth - 1, max_age)
    return removed


@contextlib.contextmanager
def removed_on_failure(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` (and missing parents); if the body fails, remove those that are still empty.

    A failed command thus leaves no empty output or cache folder behind; folders that existed
    before, or that hold anything, are kept.
    """
    folder = Path(folder)
    created = []
    probe = folder
    while not probe.exists():
        created.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


#: ``errno`` values of a write that failed because of the disk, not the data: full, over quota, read-only.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def disk_write_error(exc: BaseException) -> OSError | None:
    """The full-disk, over-quota or read-only-disk ``OSError`` behind ``exc`` (itself or a cause),
    including numpy's short write (``65536 requested and 5088 written``); None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and (
            current.errno in DISK_ERRNOS or _SHORT_WRITE.search(str(current))
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def disk_error_line(error: OSError, folder: str | os.PathLike) -> str:
    """One line for a failed write: the file (or ``folder``), the reason, and what to do."""
    where = error.filename or folder
    reason = error.strerror or str(error)
    return (
        f"cannot write {where}: {reason}; free space on that disk (or make {folder} writable) and run "
        "the same command again: finished work is kept and what failed for this reason is retried"
    )
