"""Running one item under its claim: a training run or a shared SSL pre-training.

Every executor ends in the same two functions: :func:`run_one` (one training run) and
:func:`run_pretrain` (one shared SSL pre-training). Both claim their folder first (two workers
never run the same id at once), skip work that is already complete, record a failure with its
traceback instead of raising, and write their result file last and atomically.

The work itself is done by a *backend*: a module (or object) with
``execute_run(spec, run_dir, *, store, progress, on_validation) -> DataFrame`` (the long per-case
table) and ``execute_pretrain(pre, out_dir, *, store, progress) -> dict``. The default backend,
``bench3d2d.harness._worker``, calls the training engine; ``BENCH3D2D_BACKEND=module`` selects another
(tests use a fast fake; a site may wrap the engine). A run that fine-tunes pre-trained weights gets
its pre-training ensured here, before the backend runs it, so backends never call back into the
harness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pandas as pd

from bench3d2d._console import log_to_file
from bench3d2d._io import atomic_write_json, disk_error_line, disk_write_error, remove_stale_temps
from bench3d2d._lock import ClaimLock, claim_alive
from bench3d2d.harness._spec import (
    PretrainSpec,
    RunSpec,
    canonical_json,
    pretrain_data_identity,
    run_data_identity,
)
from bench3d2d.harness._store import (
    Damage,
    ResultsStore,
    RunState,
    read_json,
    reset_folder,
    write_error_file,
)
from bench3d2d.results import (
    ARTEFACTS_KEY,
    CLAIM_FILE,
    ERROR_FILE,
    LOG_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    SPEC_FILE,
    SPLIT_FILE,
    artefact_checksums,
    sha256_file,
)

BACKEND_ENV = "BENCH3D2D_BACKEND"
DEFAULT_BACKEND = "bench3d2d.harness._worker"
log = logging.getLogger(__name__)

#: ``progress(completed, total, description)``: how far one run or pre-training is.
ProgressFn = Callable[[float, float, str], None]


class Backend(Protocol):
    """What does the work of one run or pre-training."""

    def execute_run(self, spec: RunSpec, run_dir: Path, **kwargs: Any) -> pd.DataFrame: ...

    def execute_pretrain(self, pre: PretrainSpec, out_dir: Path, **kwargs: Any) -> Mapping[str, Any]: ...


def get_backend(name: str | None = None) -> ModuleType:
    """The backend module: ``name``, else ``$BENCH3D2D_BACKEND``, else the training engine's."""
    target = name or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise LookupError(f"cannot import the sweep backend {target!r} ({BACKEND_ENV}): {exc}") from exc
    for attr in ("execute_run", "execute_pretrain"):
        if not callable(getattr(module, attr, None)):
            raise LookupError(f"sweep backend {target!r} has no function {attr}()")
    return module


@dataclass
class Outcome:
    """What happened to one run or pre-training in this sweep."""

    kind: str  # "run" or "pretrain"
    id: str
    status: str  # "complete", "skipped" (already complete), "failed", "busy" (another worker has it)
    label: str = ""
    seconds: float = 0.0
    error: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _environment() -> dict[str, Any]:
    from bench3d2d import __version__

    info: dict[str, Any] = {
        "bench3d2d": __version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
    }
    try:
        import torch

        from bench3d2d.engine._precision import cpu_has_native_bf16

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cpu_native_bf16"] = cpu_has_native_bf16()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def _file_progress(path: Path, every: float = 1.0) -> ProgressFn:
    """A progress callback writing ``progress.json`` (at most once per ``every`` seconds)."""
    last = [0.0]

    def report(completed: float, total: float, description: str = "") -> None:
        now = time.monotonic()
        if now - last[0] < every and completed < total:
            return
        last[0] = now
        with contextlib.suppress(OSError):
            atomic_write_json(path, {"completed": completed, "total": total, "description": description})

    return report


def _data_record(identity: dict[str, Any] | None, folder: Path) -> dict[str, Any]:
    """``result.json``'s ``data``: the fingerprints of the data used and of the split (when written)."""
    split = folder / SPLIT_FILE
    record: dict[str, Any] = dict(identity or {"fingerprint": None})
    record["split_sha256"] = sha256_file(split) if split.is_file() else None
    return {"data": record}


#: ``error.json``'s ``cause`` of a failure the disk caused (full, over quota, read-only): retried by the
#: next plain ``run``, as it needs no change of the run, only of the disk.
DISK_CAUSE = "disk"


def failure_cause(exc: BaseException) -> dict[str, str]:
    """``{"cause": "disk"}`` when the disk caused ``exc``, else nothing."""
    return {"cause": DISK_CAUSE} if disk_write_error(exc) is not None else {}


def failure_line(exc: BaseException, root: Path) -> str:
    """The one-line error of a failed run or pre-training (a disk failure says what to do)."""
    disk = disk_write_error(exc)
    return disk_error_line(disk, root) if disk is not None else f"{type(exc).__name__}: {exc}"


def failed_for_disk(error: Mapping[str, Any] | None) -> bool:
    """Whether a recorded failure (``error.json``) was caused by the disk, so a plain rerun retries it."""
    return bool(error) and error.get("cause") == DISK_CAUSE  # type: ignore[union-attr]


def _tee(*fns: ProgressFn | None) -> ProgressFn | None:
    live = [f for f in fns if f is not None]
    if not live:
        return None

    def report(completed: float, total: float, description: str = "") -> None:
        for f in live:
            f(completed, total, description)

    return report


def run_one(
    spec: RunSpec,
    store: ResultsStore,
    *,
    backend: Backend | ModuleType | None = None,
    progress: ProgressFn | None = None,
    progress_file: bool = False,
) -> Outcome:
    """Run one spec unless it is complete or another worker holds it; never raises on run errors.

    The run folder gets ``spec.json``, ``log.txt``, whatever the backend writes (split,
    checkpoints, predictions), then ``cases.csv`` and, last and atomically, ``result.json``. An
    exception is stored in ``error.json`` (type, message, traceback) and reported as "failed".
    """
    backend = backend or get_backend()
    run_id = spec.run_id
    label = spec.label()
    if store.is_complete(run_id):
        return Outcome("run", run_id, "skipped", label)
    folder = store.write_spec(spec)
    claim = ClaimLock(folder / CLAIM_FILE, stale_after=store.stale_after, note=label)
    if not claim.acquire():
        return Outcome("run", run_id, "busy", label, error=f"held by {claim.holder()}")
    try:
        if store.is_complete(run_id):  # finished by another worker just before we claimed it
            return Outcome("run", run_id, "skipped", label)
        remove_stale_temps(folder)  # left by a killed attempt
        report = _tee(progress, _file_progress(folder / PROGRESS_FILE) if progress_file else None)
        start = time.time()
        with log_to_file(folder / LOG_FILE):
            log.info("run %s (%s) attempt on %s pid %d", run_id, label, socket.gethostname(), os.getpid())
            log.info("spec %s", canonical_json(spec.to_dict()))

            def on_validation(step: int, score: float) -> None:
                log.info("validation %d: %.6f", step, score)

            try:
                identity = run_data_identity(spec)
                pre = spec.pretrain_spec()
                if pre is not None:
                    ensure_pretrained(pre, store, backend=backend)
                cases = backend.execute_run(
                    spec, folder, store=store, progress=report, on_validation=on_validation
                )
                seconds = time.time() - start
                started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start))
                info = {"seconds": seconds, "started": started, "finished": _now(), "pid": os.getpid()}
                extra = dict(getattr(cases, "attrs", {}).get("run_info") or {})
                info.update(_data_record(identity, folder))
                store.write_result(spec, cases, {**extra, **info, "environment": _environment()})
                log.info("complete in %.1f s", seconds)
                return Outcome("run", run_id, "complete", label, seconds)
            except Exception as exc:
                seconds = time.time() - start
                info = {"seconds": seconds, **failure_cause(exc)}
                store.write_error(spec, exc, info)
                log.exception("run failed after %.1f s", seconds)
                return Outcome("run", run_id, "failed", label, seconds, failure_line(exc, store.root))
    finally:
        (folder / PROGRESS_FILE).unlink(missing_ok=True)
        claim.release()


# -- shared SSL pre-training -------------------------------------------------------------------------
def pretrain_state(pre: PretrainSpec, store: ResultsStore) -> RunState:
    """Complete, failed, running, incomplete or pending, as for runs."""
    folder = store.pretrain_path(pre)
    if (read_json(folder / RESULT_FILE) or {}).get("status") == "complete":
        return RunState.COMPLETE
    if claim_alive(folder / CLAIM_FILE, store.stale_after):
        return RunState.RUNNING
    if (folder / ERROR_FILE).is_file():
        return RunState.FAILED
    return RunState.INCOMPLETE if (folder / LOG_FILE).is_file() else RunState.PENDING


def write_pretrain_spec(pre: PretrainSpec, store: ResultsStore) -> Path:
    folder = store.pretrain_path(pre)
    if read_json(folder / SPEC_FILE) != pre.to_dict():
        atomic_write_json(folder / SPEC_FILE, pre.to_dict())
    return folder


def read_pretrain_spec(store: ResultsStore, key: str) -> PretrainSpec:
    """The pre-training stored under ``RESULTS/pretrain/<key>``."""
    path = store.pretrain_dir / key / SPEC_FILE
    data = read_json(path)
    if data is None:
        raise FileNotFoundError(f"no readable pre-training spec at {path}")
    names = {f.name for f in dataclasses.fields(PretrainSpec)}  # every field, the recipe's included
    pre = PretrainSpec(**{k: v for k, v in data.items() if k in names})
    if pre.key != key:
        raise ValueError(f"{path} describes pre-training {pre.key}, not {key}")
    return pre


def run_pretrain(
    pre: PretrainSpec,
    store: ResultsStore,
    *,
    backend: Backend | ModuleType | None = None,
    progress: ProgressFn | None = None,
    progress_file: bool = False,
    wait: bool = True,
) -> Outcome:
    """Pre-train once per key (waiting for a worker that is already at it); never raises on errors."""
    backend = backend or get_backend()
    folder = write_pretrain_spec(pre, store)
    label = pre.label()
    if pretrain_state(pre, store) is RunState.COMPLETE:
        return Outcome("pretrain", pre.key, "skipped", label)
    claim = ClaimLock(folder / CLAIM_FILE, stale_after=store.stale_after, note=label)
    if not claim.acquire(wait=wait, poll=2.0):
        return Outcome("pretrain", pre.key, "busy", label, error=f"held by {claim.holder()}")
    try:
        if pretrain_state(pre, store) is RunState.COMPLETE:
            return Outcome("pretrain", pre.key, "skipped", label)
        remove_stale_temps(folder)  # left by a killed attempt
        report = _tee(progress, _file_progress(folder / PROGRESS_FILE) if progress_file else None)
        start = time.time()
        with log_to_file(folder / LOG_FILE):
            log.info("pre-training %s (%s) on %s pid %d", pre.key, label, socket.gethostname(), os.getpid())
            try:
                identity = pretrain_data_identity(pre)
                info = dict(backend.execute_pretrain(pre, folder, store=store, progress=report) or {})
                seconds = time.time() - start
                (folder / ERROR_FILE).unlink(missing_ok=True)
                atomic_write_json(
                    folder / RESULT_FILE,
                    {"status": "complete", "key": pre.key, "spec": pre.identity(), "seconds": seconds,
                     "finished": _now(), "environment": _environment(), **info,
                     **_data_record(identity, folder), ARTEFACTS_KEY: artefact_checksums(folder, None)},
                )  # fmt: skip
                return Outcome("pretrain", pre.key, "complete", label, seconds)
            except Exception as exc:
                seconds = time.time() - start
                write_error_file(folder, exc, {"key": pre.key}, {"seconds": seconds, **failure_cause(exc)})
                log.exception("pre-training failed after %.1f s", seconds)
                return Outcome("pretrain", pre.key, "failed", label, seconds, failure_line(exc, store.root))
    finally:
        (folder / PROGRESS_FILE).unlink(missing_ok=True)
        claim.release()


def ensure_pretrained(
    pre: PretrainSpec,
    store: ResultsStore,
    *,
    backend: Backend | ModuleType | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The result record of a pre-training, computing it first (under its claim) if needed."""
    folder = store.pretrain_path(pre)
    outcome = run_pretrain(pre, store, backend=backend, progress=progress, wait=True)
    if outcome.status == "failed":
        raise RuntimeError(f"SSL pre-training {pre.key} ({pre.label()}) failed: {outcome.error}")
    result = read_json(folder / RESULT_FILE)
    if result is None:
        raise RuntimeError(f"SSL pre-training {pre.key} finished without {folder / RESULT_FILE}")
    return result


def repair(
    store: ResultsStore,
    damaged: list[Damage] | None = None,
    *,
    backend: Backend | ModuleType | None = None,
) -> list[Outcome]:
    """Run exactly the damaged runs and pre-trainings again (default: all that ``store.verify()`` finds).

    Each one's folder is emptied but for its ``spec.json`` (its result first), then it is run afresh
    under its claim; pre-trainings come first, as runs may need them.
    """
    damaged = store.verify() if damaged is None else damaged
    backend = backend or get_backend()
    outcomes = []
    for item in sorted(damaged, key=lambda d: d.kind != "pretrain"):
        if item.kind == "pretrain":
            pre = read_pretrain_spec(store, item.id)
            reset_folder(store.pretrain_path(pre))
            outcomes.append(run_pretrain(pre, store, backend=backend))
        else:
            spec = store.read_spec(item.id)
            store.reset_run(item.id)
            outcomes.append(run_one(spec, store, backend=backend))
    return outcomes
