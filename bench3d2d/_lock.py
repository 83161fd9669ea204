"""Claim files, the library's one lock scheme (private): at most one process does a given thing at a time.

Runs and pre-trainings (the harness), SSL weights (the engine) and prepared dataset caches (data)
all take a claim before they write shared files. This module sits in the bottom layer so that every
layer can use it.

A claim is a small JSON file created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+), holding
the host, pid, process start time and a random token. While held, a heartbeat thread touches it.
A claim is stale when its process is gone (same host: the pid is dead, a zombie or reused) or its
heartbeat is older than ``stale_after`` seconds (any host). A stale claim is taken over under a
short takeover lock, so that two workers never both take over the same claim.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

#: A claim whose heartbeat is older than this (seconds) is stale, whichever host wrote it.
DEFAULT_STALE_AFTER = 600.0
#: Seconds between heartbeats of a held claim.
DEFAULT_HEARTBEAT = 30.0
#: The takeover critical section takes milliseconds; a takeover lock older than this is abandoned.
_TAKEOVER_STALE_AFTER = 30.0


_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_TAG = re.compile(r"\.([0-9a-f]{6})-(\d+)\.")


def temp_tag() -> str:
    """``<host hash>-<pid>``: put in a temporary file's name, it tells a cleaner whether its writer lives."""
    return f"{_HOST_TAG}-{os.getpid()}"


def temp_writer_alive(name: str) -> bool | None:
    """Whether the writer of a temporary file named with :func:`temp_tag` still runs.

    None when the name has no tag or was written on another host (the caller then judges by age).
    """
    tags = _TEMP_TAG.findall(name)  # the last one: the final name itself may look like a tag
    if not tags or tags[-1][0] != _HOST_TAG:
        return None
    return pid_alive(int(tags[-1][1]))


class ClaimTimeout(TimeoutError):
    """Waiting for a claim took longer than the caller allowed."""


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # fields[0] is the state (field 3); the start time is field 22.
    return fields[19] if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` on this host runs (not a zombie; same start time if given)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _proc_state(pid) in ("Z", "X"):
        return False
    if start is not None:
        now_start = _proc_start(pid)
        if now_start is not None and now_start != start:
            return False
    return True


def read_claim(path: Path) -> dict[str, Any] | None:
    """The claim's content, with its heartbeat age in seconds as ``age``; None if absent."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError
    except ValueError:
        # Half-written by a process killed between create and write: stale once it is not fresh.
        info = {"host": None, "pid": None, "corrupt": True}
    info["age"] = age
    return info


def is_stale(info: dict[str, Any], stale_after: float = DEFAULT_STALE_AFTER) -> bool:
    """Whether a claim (as returned by :func:`read_claim`) no longer protects anything."""
    if info.get("age", 0.0) > stale_after:
        return True
    if info.get("corrupt"):
        return info.get("age", 0.0) > 5.0
    if info.get("host") == socket.gethostname() and info.get("pid") is not None:
        return not pid_alive(int(info["pid"]), info.get("start"))
    return False


class ClaimLock:
    """An exclusive claim on ``path``; use ``with ClaimLock(p):`` (waits) or :meth:`acquire`."""

    def __init__(
        self,
        path: str | os.PathLike,
        stale_after: float = DEFAULT_STALE_AFTER,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        note: str = "",
    ) -> None:
        self.path = Path(path)
        self.stale_after = float(stale_after)
        self.heartbeat = heartbeat
        self.note = note
        self.token = secrets.token_hex(8)
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> bytes:
        pid = os.getpid()
        info = {
            "host": socket.gethostname(),
            "pid": pid,
            "start": _proc_start(pid),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": self.token,
            "note": self.note,
        }
        return json.dumps(info).encode()

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._content())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _take_over_stale(self) -> bool:
        """Remove the claim if it is stale, under a takeover lock; True if it was removed."""
        lock = self.path.with_name(self.path.name + ".takeover")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > _TAKEOVER_STALE_AFTER:
                    lock.unlink()
            except FileNotFoundError:
                pass
            return False
        os.close(fd)
        try:
            info = read_claim(self.path)
            if info is None:
                return True
            if not is_stale(info, self.stale_after):
                return False
            self.path.unlink(missing_ok=True)
            return True
        finally:
            lock.unlink(missing_ok=True)

    def acquire(self, wait: bool = False, poll: float = 1.0, timeout: float | None = None) -> bool:
        """Take the claim; without ``wait`` return False at once when a live worker holds it."""
        if self.held:
            raise RuntimeError(f"claim {self.path} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._try_create():
                self.held = True
                self._start_heartbeat()
                return True
            info = read_claim(self.path)
            if (info is None or is_stale(info, self.stale_after)) and self._take_over_stale():
                continue
            if not wait:
                return False
            if deadline is not None and time.monotonic() > deadline:
                raise ClaimTimeout(f"waited {timeout:.0f} s for {self.path} (held by {self.holder()})")
            time.sleep(poll)

    def holder(self) -> str:
        """Who holds the claim now, for messages."""
        info = read_claim(self.path)
        if info is None:
            return "nobody"
        return f"pid {info.get('pid')} on {info.get('host')} since {info.get('time')}"

    def _start_heartbeat(self) -> None:
        if not self.heartbeat:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"claim-{self.path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        """Give the claim up (only if the file is still ours)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        info = read_claim(self.path)
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> ClaimLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_alive(path: Path, stale_after: float = DEFAULT_STALE_AFTER) -> bool:
    """Whether a live worker holds the claim at ``path`` now."""
    info = read_claim(path)
    return info is not None and not is_stale(info, stale_after)
