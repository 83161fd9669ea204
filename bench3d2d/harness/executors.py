"""Executors: where runs happen. In-process (default), one subprocess per run, or SLURM (submitit).

All three call the same function for each item, :func:`work`, which ends in
``_runner.run_one`` or ``_runner.run_pretrain`` and writes to the same results store; they differ
only in the process that calls it. Each returns one ``Outcome`` per item.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench3d2d._console import progress_bar
from bench3d2d.harness._devices import device_env
from bench3d2d.harness._runner import (
    Outcome,
    ProgressFn,
    get_backend,
    read_pretrain_spec,
    run_one,
    run_pretrain,
    write_pretrain_spec,
)
from bench3d2d.harness._spec import PretrainSpec, RunSpec
from bench3d2d.harness._store import ResultsStore, read_json, write_error_file
from bench3d2d.harness._worker import THREADS_ENV
from bench3d2d.models import PLUGINS_ENV, load_plugin, plugin_specs
from bench3d2d.results import PROGRESS_FILE

__all__ = [
    "EXECUTORS",
    "LocalExecutor",
    "SlurmExecutor",
    "SubprocessExecutor",
    "SweepProgress",
    "make_executor",
    "work",
    "work_by_id",
]

Item = RunSpec | PretrainSpec


def _kind(item: Item) -> str:
    return "run" if isinstance(item, RunSpec) else "pretrain"


def _ident(item: Item) -> str:
    return item.run_id if isinstance(item, RunSpec) else item.key


def _folder(item: Item, store: ResultsStore) -> Path:
    return store.run_dir(item.run_id) if isinstance(item, RunSpec) else store.pretrain_path(item)


def work(
    item: Item,
    store: ResultsStore,
    *,
    backend: Any = None,
    progress: ProgressFn | None = None,
    progress_file: bool = False,
) -> Outcome:
    """Do one run or pre-training (the single code path of every executor)."""
    if isinstance(item, RunSpec):
        return run_one(item, store, backend=backend, progress=progress, progress_file=progress_file)
    return run_pretrain(item, store, backend=backend, progress=progress, progress_file=progress_file)


def work_by_id(root: str, kind: str, ident: str, stale_after: float | None = None) -> Outcome:
    """Load a stored spec by id and :func:`work` on it, reporting progress to ``progress.json``."""
    get_backend()  # imported first: a site backend may register models and profiles
    store = ResultsStore(root) if stale_after is None else ResultsStore(root, stale_after=stale_after)
    if kind == "run":
        item: Item = store.read_spec(ident)
    elif kind == "pretrain":
        item = read_pretrain_spec(store, ident)
    else:
        raise ValueError(f"unknown work kind {kind!r} (run or pretrain)")
    return work(item, store, progress_file=True)


def _prepare(item: Item, store: ResultsStore) -> Path:
    """Write the spec a worker process will read."""
    if isinstance(item, RunSpec):
        return store.write_spec(item)
    return write_pretrain_spec(item, store)


def _record_crash(item: Item, store: ResultsStore, message: str) -> Outcome:
    """A worker died without reporting (killed, out of memory, segfault): record it as failed."""
    exc = RuntimeError(message)
    if isinstance(item, RunSpec):
        if not store.is_complete(item.run_id):
            store.write_error(item, exc, {"cause": "worker"})
    else:
        folder = store.pretrain_path(item)
        if (read_json(folder / "result.json") or {}).get("status") != "complete":
            write_error_file(folder, exc, {"key": item.key}, {"cause": "worker"})
    return Outcome(_kind(item), _ident(item), "failed", item.label(), 0.0, f"RuntimeError: {message}")


# -- progress ----------------------------------------------------------------------------------------
class SweepProgress:
    """An overall bar (items done / total, ETA) with one bar per running item under it.

    Uses rich on a terminal; elsewhere (logs, CI) prints one line per finished item instead.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self._progress: Any = None  # a rich Progress while entered and enabled
        self._overall: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> SweepProgress:
        if self.enabled and self._progress is None:
            self._progress = progress_bar(stream=self.stream)
            self._progress.start()
            self._overall = self._progress.add_task("sweep", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the display."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start(self, key: str, label: str) -> ProgressFn:
        """Add a bar for one item; returns its progress callback."""
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(f"  {label}", total=None)

        def report(completed: float, total: float, description: str = "") -> None:
            self.update(key, completed, total, description)

        return report

    def update(self, key: str, completed: float, total: float, description: str = "") -> None:
        """Move one item's bar."""
        if self._progress is not None and key in self._tasks:
            self._progress.update(self._tasks[key], completed=completed, total=total)

    def finish(self, key: str, outcome: Outcome) -> None:
        """Remove an item's bar and advance the overall one."""
        if self._progress is not None and key in self._tasks:
            self._progress.remove_task(self._tasks.pop(key))
        self.advance(outcome)

    def advance(self, outcome: Outcome) -> None:
        """Count one finished item (printing a line when there is no live display)."""
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._overall)
            if outcome.status == "failed":
                self._progress.console.print(f"[red]failed[/red] {outcome.label}: {outcome.error}")
        else:
            extra = f": {outcome.error}" if outcome.error else ""
            print(
                f"[{self.done}/{self.total}] {outcome.status} {outcome.kind} {outcome.id} {outcome.label} "
                f"({outcome.seconds:.1f} s){extra}",
                file=self.stream,
                flush=True,
            )

    def poll(self, key: str, folder: Path) -> None:
        """Update an item's bar from the ``progress.json`` its worker writes."""
        if self._progress is None:
            return
        data = read_json(folder / PROGRESS_FILE)
        if data:
            self.update(key, float(data.get("completed", 0)), float(data.get("total", 0) or 0))


# -- executors ---------------------------------------------------------------------------------------
class LocalExecutor:
    """Runs every item one after the other in this process (the default)."""

    name = "local"
    jobs = 1

    def __init__(self, backend: Any = None) -> None:
        self.backend = backend

    def map(self, items: Sequence[Item], store: ResultsStore, progress: SweepProgress) -> list[Outcome]:
        """Do the items in order."""
        outcomes = []
        for item in items:
            key = _ident(item)
            report = progress.start(key, item.label())
            outcome = work(item, store, backend=self.backend, progress=report)
            progress.finish(key, outcome)
            outcomes.append(outcome)
        return outcomes


class SubprocessExecutor:
    """One ``python -m bench3d2d run-one`` process per item, ``jobs`` at a time.

    A crash of the worker (segfault, out of memory, a kill) is recorded as that run's failure;
    memory is returned to the system after every run. With ``devices`` (``("cuda:0", "cuda:1")``)
    each worker slot has its own device, the ``i``-th slot ``devices[i % len(devices)]``, and its
    worker sees only that GPU; ``jobs`` defaults to the number of devices.
    """

    name = "subprocess"

    def __init__(
        self,
        jobs: int | None = None,
        python: str | None = None,
        poll: float = 0.2,
        devices: Sequence[str] = (),
    ) -> None:
        jobs = (len(devices) or 1) if jobs is None else jobs
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self.devices = tuple(devices)
        self.python = python or sys.executable
        self.poll_every = poll
        for device in self.devices:  # an impossible device fails now, not in the first worker
            device_env(device, os.environ)

    def slot_device(self, slot: int) -> str | None:
        """The device of worker slot ``slot`` (None: no device list, the worker's default)."""
        return self.devices[slot % len(self.devices)] if self.devices else None

    def _env(self, device: str | None = None) -> dict[str, str]:
        """The workers' environment: the cores shared out between the ``jobs`` workers, the slot's
        device alone (``CUDA_VISIBLE_DEVICES``), and every model plugin this process loaded
        (``--plugin``) or was told of (``BENCH3D2D_PLUGINS``)."""
        env = dict(os.environ)
        env.setdefault(THREADS_ENV, str(max(1, (os.cpu_count() or 1) // self.jobs)))
        if device is not None:
            env.update(device_env(device, os.environ))
        plugins = plugin_specs()
        if plugins:
            env[PLUGINS_ENV] = os.pathsep.join(plugins)
        return env

    def command(self, item: Item, store: ResultsStore) -> list[str]:
        """The worker's command line."""
        cmd = [self.python, "-m", "bench3d2d", "run-one", str(store.root), _ident(item), "--json"]
        if isinstance(item, PretrainSpec):
            cmd.append("--pretrain")
        cmd += ["--stale-after", str(store.stale_after)]
        return cmd

    def map(self, items: Sequence[Item], store: ResultsStore, progress: SweepProgress) -> list[Outcome]:
        """Run the items in worker processes and collect their outcomes."""
        queue = list(items)
        running: dict[str, tuple[Item, subprocess.Popen, Path, int]] = {}
        results: dict[str, Outcome] = {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    item = queue.pop(0)
                    slot = min(set(range(self.jobs)) - {r[3] for r in running.values()})
                    proc, out_path = self._start(item, store, slot)
                    running[_ident(item)] = (item, proc, out_path, slot)
                    progress.start(_ident(item), item.label())
                for key, (item, proc, out_path, _slot) in list(running.items()):
                    progress.poll(key, _folder(item, store))
                    if proc.poll() is None:
                        continue
                    del running[key]
                    outcome = _parse_outcome(out_path, item) if proc.returncode in (0, 1) else None
                    if outcome is None:
                        outcome = _record_crash(
                            item,
                            store,
                            f"worker process exited with status {proc.returncode} (see {out_path})",
                        )
                    results[key] = outcome
                    progress.finish(key, outcome)
                time.sleep(self.poll_every)
        finally:
            for _, proc, _, _ in running.values():
                proc.terminate()
            for _, proc, _, _ in running.values():
                proc.wait()
        return [results[_ident(i)] for i in items if _ident(i) in results]

    def _start(self, item: Item, store: ResultsStore, slot: int) -> tuple[subprocess.Popen, Path]:
        """Start the worker of ``item`` in worker slot ``slot`` (on that slot's device)."""
        folder = _prepare(item, store)
        out_path = folder / "worker.out"
        device = self.slot_device(slot)
        with open(out_path, "ab") as out:
            if device is not None:
                out.write(f"[bench3d2d] worker slot {slot} on {device}\n".encode())
                out.flush()
            proc = subprocess.Popen(
                self.command(item, store), stdout=out, stderr=subprocess.STDOUT, env=self._env(device)
            )
        return proc, out_path


def _parse_outcome(out_path: Path, item: Item) -> Outcome | None:
    """The outcome a worker printed as its last JSON line."""
    try:
        lines = out_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("{") and '"status"' in line:
            try:
                data = json.loads(line)
                if data.get("id") == _ident(item):
                    return Outcome(**data)
            except (ValueError, TypeError):
                return None
    return None


class SlurmExecutor:
    """Each item as a submitit job: SLURM on a cluster, or submitit's ``local``/``debug`` backends.

    ``parameters`` go to ``AutoExecutor.update_parameters`` (e.g. ``timeout_min``,
    ``slurm_partition``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``). On SLURM every item is
    submitted at once as a job array running at most ``jobs`` at a time; the other backends get
    ``jobs`` items at a time. ``wait=False`` submits and returns (follow with ``bench3d2d status``).
    """

    name = "slurm"

    def __init__(
        self,
        jobs: int = 1,
        folder: str | os.PathLike | None = None,
        cluster: str | None = None,
        parameters: dict[str, Any] | None = None,
        wait: bool = True,
        poll: float = 1.0,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self.folder = folder
        self.cluster = cluster
        self.parameters = dict(parameters or {})
        self.wait = wait
        self.poll_every = poll

    def _executor(self, store: ResultsStore) -> Any:
        import submitit

        folder = Path(self.folder) if self.folder else store.root / "submitit"
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params = {"name": "bench3d2d", "timeout_min": 24 * 60, **self.parameters}
        if ex.cluster == "slurm":
            params.setdefault("slurm_array_parallelism", self.jobs)
        else:
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        ex.update_parameters(**params)
        return ex

    def map(self, items: Sequence[Item], store: ResultsStore, progress: SweepProgress) -> list[Outcome]:
        """Submit the items and (unless ``wait`` is off) wait for their outcomes."""
        ex = self._executor(store)
        for item in items:
            _prepare(item, store)
        plugins = tuple(plugin_specs())
        args = [(str(store.root), _kind(i), _ident(i), store.stale_after, plugins) for i in items]
        window = len(items) if ex.cluster == "slurm" else self.jobs
        pending = list(zip(items, args))
        running: dict[str, tuple[Item, Any]] = {}
        results: dict[str, Outcome] = {}
        while pending or running:
            if pending and len(running) < window:
                batch, pending = pending[: window - len(running)], pending[window - len(running) :]
                jobs = ex.map_array(_submitit_work, *zip(*(a for _, a in batch)))
                for (item, _), job in zip(batch, jobs):
                    running[_ident(item)] = (item, job)
                    progress.start(_ident(item), item.label())
                if not self.wait and not pending:
                    ids = ", ".join(j.job_id for _, j in running.values())
                    print(f"submitted {len(items)} job(s) to {ex.cluster}: {ids}", file=sys.stderr)
                    return []
            for key, (item, job) in list(running.items()):
                progress.poll(key, _folder(item, store))
                if not job.done():
                    continue
                del running[key]
                try:
                    outcome = job.result()
                except Exception as exc:  # the job died: killed, timed out, node failure
                    outcome = _record_crash(item, store, f"submitit job {job.job_id} failed: {exc}")
                results[key] = outcome
                progress.finish(key, outcome)
            time.sleep(self.poll_every)
        return [results[_ident(i)] for i in items if _ident(i) in results]


def _submitit_work(
    root: str, kind: str, ident: str, stale_after: float, plugins: Sequence[str] = ()
) -> Outcome:
    """The function a submitit job runs: load the submitting process's model plugins, then work."""
    for plugin in plugins:
        load_plugin(plugin)
    return work_by_id(root, kind, ident, stale_after=stale_after)


EXECUTORS = {"local": LocalExecutor, "subprocess": SubprocessExecutor, "slurm": SlurmExecutor}


def make_executor(name: str, jobs: int | None = None, **options: Any) -> Any:
    """An executor by name (``local``, ``subprocess``, ``slurm``). ``devices`` (subprocess only):
    one device per worker slot, and ``jobs`` defaults to their number (else to 1)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    devices = tuple(options.get("devices") or ())
    if devices and name != "subprocess":
        where = (
            "SLURM gives each job its own GPUs (--slurm-gpus)"
            if name == "slurm"
            else "it runs in this process"
        )
        raise ValueError(f"--devices needs --executor subprocess (the {name} executor: {where})")
    if name == "subprocess":
        return SubprocessExecutor(jobs=jobs, python=options.get("python"), devices=devices)
    jobs = 1 if jobs is None else jobs
    if name == "local":
        if jobs != 1:
            raise ValueError(
                "the local executor runs one run at a time; use --executor subprocess for --jobs > 1"
            )
        return LocalExecutor(backend=options.get("backend"))
    return SlurmExecutor(
        jobs=jobs,
        folder=options.get("folder"),
        cluster=options.get("cluster"),
        parameters=options.get("parameters"),
        wait=options.get("wait", True),
    )
