"""Sweeps: plan expansion, what is left to do, the time estimate, and running a plan with an executor.

One run or pre-training is run by :mod:`bench3d2d.harness._runner` (claimed, resumable, failures
recorded); executors (:mod:`bench3d2d.harness.executors`) decide in which process. This module
re-exports the names a caller of the harness needs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench3d2d._io import remove_stale_temps
from bench3d2d._lock import DEFAULT_STALE_AFTER
from bench3d2d.harness._devices import parallel_devices, parse_devices
from bench3d2d.harness._plan import (
    BENCHMARKS,
    DEFAULT_DATASETS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEEDS,
    Benchmark,
    Plan,
    PlanOptions,
    expand_plan,
    parse_fractions,
    parse_pretrain,
    parse_seeds,
    resolve_benchmarks,
    resolve_models,
    split_list,
)
from bench3d2d.harness._runner import (
    BACKEND_ENV,
    Backend,
    Outcome,
    ProgressFn,
    ensure_pretrained,
    get_backend,
    pretrain_state,
    read_pretrain_spec,
    repair,
    run_one,
    run_pretrain,
)
from bench3d2d.harness._spec import (
    SCHEMA_VERSION,
    PretrainSpec,
    RunSpec,
    canonical_json,
    changed_datasets,
    pretrain_data_identity,
    run_data_identity,
)
from bench3d2d.harness._store import Damage, ResultsStore, RunState, read_json, reset_folder
from bench3d2d.harness.executors import LocalExecutor, SweepProgress
from bench3d2d.results import CASE_COLUMNS, ERROR_FILE, RESULT_FILE

log = logging.getLogger(__name__)

__all__ = [
    "BACKEND_ENV",
    "BENCHMARKS",
    "CASE_COLUMNS",
    "DEFAULT_DATASETS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEEDS",
    "SCHEMA_VERSION",
    "Backend",
    "Benchmark",
    "Damage",
    "DataChangedError",
    "Outcome",
    "Plan",
    "PlanOptions",
    "PretrainSpec",
    "ProgressFn",
    "ResultsStore",
    "RunSpec",
    "RunState",
    "SweepReport",
    "canonical_json",
    "ensure_pretrained",
    "estimate_seconds",
    "expand_plan",
    "get_backend",
    "parse_devices",
    "parse_fractions",
    "parse_pretrain",
    "parse_seeds",
    "pretrain_state",
    "read_pretrain_spec",
    "repair",
    "resolve_benchmarks",
    "resolve_models",
    "run_one",
    "run_pretrain",
    "run_sweep",
    "select_work",
    "split_list",
]


# -- sweeps ------------------------------------------------------------------------------------------
class DataChangedError(ValueError):
    """Complete runs (or pre-trainings) of the results folder were made from other data than now."""


@dataclass
class Work:
    """What a sweep still has to do, and what it skips.

    ``changed`` maps complete runs and pre-trainings made from other data than the data now found
    (a fingerprint differs) to the names of the changed datasets; with ``rerun_changed`` they are
    also in ``runs`` / ``pretrainings`` and are emptied before they run again.
    """

    runs: list[RunSpec]
    pretrainings: list[PretrainSpec]
    complete: list[str] = field(default_factory=list)
    failed_skipped: list[str] = field(default_factory=list)
    pretrain_complete: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    changed_labels: dict[str, str] = field(default_factory=dict)
    rerun_changed: bool = False


def _changed(result: Mapping[str, Any] | None, current: dict[str, Any] | None) -> list[str] | None:
    return changed_datasets((result or {}).get("data"), current)


def select_work(
    plan: Plan, store: ResultsStore, retry_failed: bool = False, rerun_changed: bool = False
) -> Work:
    """Runs and pre-trainings to execute: not complete, and not failed unless ``retry_failed``.

    A complete run whose recorded data fingerprint differs from the data now is listed in
    ``changed``; ``rerun_changed`` also schedules it again.
    """
    work = Work(runs=[], pretrainings=[], rerun_changed=rerun_changed)
    memo: dict = {}
    for spec in plan.runs:
        state = store.state(spec.run_id)
        if state is RunState.COMPLETE:
            changed = _changed(store.result(spec.run_id), run_data_identity(spec, memo))
            if changed:
                work.changed[spec.run_id], work.changed_labels[spec.run_id] = changed, spec.label()
                if rerun_changed:
                    work.runs.append(spec)
                    continue
            work.complete.append(spec.run_id)
        elif state is RunState.FAILED and not retry_failed:
            work.failed_skipped.append(spec.run_id)
        else:
            work.runs.append(spec)
    needed = {s.pretrain_spec().key for s in work.runs if s.pretrain != "none"}  # type: ignore[union-attr]
    for pre in plan.pretrainings:
        state = pretrain_state(pre, store)
        if state is RunState.COMPLETE:
            result = read_json(store.pretrain_path(pre) / RESULT_FILE)
            changed = _changed(result, pretrain_data_identity(pre, memo))
            if changed:
                work.changed[pre.key], work.changed_labels[pre.key] = changed, pre.label()
                if rerun_changed:
                    work.pretrainings.append(pre)
                    continue
            work.pretrain_complete.append(pre.key)
        elif pre.key in needed and (state is not RunState.FAILED or retry_failed):
            work.pretrainings.append(pre)
    return work


def changed_message(work: Work, store: ResultsStore) -> str:
    """What changed, and the two ways on: a new results folder, or ``--rerun-changed``."""
    lines = [f"{store.root}: {len(work.changed)} complete run(s) or pre-training(s) were made from other "
             "data than the data found now (a data fingerprint differs); refusing to mix them:"]  # fmt: skip
    for ident, names in list(work.changed.items())[:10]:
        lines.append(f"  {ident} ({work.changed_labels.get(ident, '')}): changed {', '.join(names)}")
    if len(work.changed) > 10:
        lines.append(f"  ... and {len(work.changed) - 10} more")
    lines.append("Either write to a new results folder (--out), or redo exactly these with --rerun-changed.")
    return "\n".join(lines)


#: Rough seconds per run and per pre-training when the results folder has no timings yet.
#: smoke: medians of the whole smoke sweep alone on a 2-core CPU with native bf16 (runs 5.5-24 s,
#: pre-trainings 12-15 s; expect several times more without bf16 or with other jobs on the cores);
#: standard: the equal-budget tuning's trials took 142 s on average (30 trials of 6 models, one thread
#: each, float32, two processes on a 2-core CPU; 30-570 s, IPN the slowest), to which a run adds
#: its test evaluation and up to twice the steps (``max_steps`` 400 since); 300 s per run and pre-training.
#: paper: a guess for one GPU. See docs/running.md.
FALLBACK_SECONDS: dict[str, tuple[float, float]] = {
    "standard": (300.0, 300.0),
    "smoke": (14.0, 13.0),
    "paper": (4 * 3600.0, 8 * 3600.0),
}


def estimate_seconds(
    work: Work, store: ResultsStore, jobs: int = 1, devices: Sequence[str] = ()
) -> tuple[float, str]:
    """Estimated wall seconds for ``work`` with ``jobs`` parallel workers, and how it was estimated.
    With a device list (``--devices``), workers that share a device do not count twice.

    Per model and profile: the median duration of complete runs (and pre-trainings) in this
    results folder; else the median of that profile's runs; else :data:`FALLBACK_SECONDS`.
    """
    timings = store.table()
    timings = timings[(timings["state"] == "complete") & timings["seconds"].notna()]
    pre_times: dict[tuple[str, str], list[float]] = {}
    for folder in store.pretrain_dir.glob(f"*/{RESULT_FILE}") if store.pretrain_dir.is_dir() else []:
        data = read_json(folder) or {}
        spec = data.get("spec") or {}
        if data.get("status") == "complete" and "seconds" in data:
            pre_times.setdefault((spec.get("model", ""), spec.get("profile", "")), []).append(
                float(data["seconds"])
            )
    used_store = used_fallback = False

    def run_secs(spec: RunSpec) -> float:
        nonlocal used_store, used_fallback
        same = timings[(timings["profile"] == spec.profile) & (timings["model"] == spec.model)]
        if same.empty:
            same = timings[timings["profile"] == spec.profile]
        if not same.empty:
            used_store = True
            return float(same["seconds"].median())
        used_fallback = True
        return FALLBACK_SECONDS.get(spec.profile, FALLBACK_SECONDS["paper"])[0]

    def pre_secs(pre: PretrainSpec) -> float:
        nonlocal used_store, used_fallback
        values = pre_times.get((pre.model, pre.profile)) or [
            v for (_, prof), vs in pre_times.items() if prof == pre.profile for v in vs
        ]
        if values:
            used_store = True
            return float(pd.Series(values).median())
        used_fallback = True
        return FALLBACK_SECONDS.get(pre.profile, FALLBACK_SECONDS["paper"])[1]

    total = sum(run_secs(s) for s in work.runs) + sum(pre_secs(p) for p in work.pretrainings)
    how = " and ".join(
        x for x, used in (("timings of complete runs in the results folder", used_store),
                          ("the per-profile fallback table", used_fallback)) if used
    ) or "nothing to run"  # fmt: skip
    return total / parallel_devices(jobs, devices), how


@dataclass
class SweepReport:
    """The outcome of :func:`run_sweep`."""

    plan_size: int
    pretrain_size: int
    outcomes: list[Outcome]
    skipped_complete: int
    skipped_failed: int
    seconds: float

    def count(self, status: str, kind: str = "run") -> int:
        """How many runs (or pre-trainings) ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status == status and o.kind == kind)

    @property
    def failed(self) -> list[Outcome]:
        """Failed runs and pre-trainings."""
        return [o for o in self.outcomes if o.status == "failed"]


def _fail_dependents(
    runs: Iterable[RunSpec], failed: Mapping[str, Outcome], store: ResultsStore
) -> list[Outcome]:
    """Record runs whose pre-training failed as failed (without running them)."""
    out = []
    for spec in runs:
        pre = spec.pretrain_spec()
        if pre is None or pre.key not in failed:
            continue
        store.write_spec(spec)
        exc = RuntimeError(f"SSL pre-training {pre.key} ({pre.label()}) failed: {failed[pre.key].error}")
        store.write_error(spec, exc, {"seconds": 0.0, "cause": "pretraining"})
        out.append(Outcome("run", spec.run_id, "failed", spec.label(), 0.0, f"RuntimeError: {exc}"))
    return out


def run_sweep(
    plan: Plan,
    store: ResultsStore,
    executor: Any = None,
    retry_failed: bool = False,
    progress: Any = None,
    rerun_changed: bool = False,
) -> SweepReport:
    """Execute a plan: shared pre-trainings first, then the runs; complete work is skipped.

    Complete runs made from other data than now (see :func:`select_work`) raise
    :class:`DataChangedError`, unless ``rerun_changed`` runs exactly those again.

    ``executor`` is an :mod:`bench3d2d.harness.executors` executor (default: in-process). ``progress`` is
    an ``executors.SweepProgress`` (default: a rich display on a terminal, plain lines otherwise).
    """
    executor = executor or LocalExecutor()
    start = time.time()
    clean_leftovers(store)
    for spec in plan.runs:
        store.write_spec(spec)  # `status` shows planned runs as pending
    work = select_work(plan, store, retry_failed=retry_failed, rerun_changed=rerun_changed)
    if work.changed and not rerun_changed:
        raise DataChangedError(changed_message(work, store))
    for spec in work.runs:
        if spec.run_id in work.changed:
            store.reset_run(spec.run_id)
    for pre in work.pretrainings:
        if pre.key in work.changed:
            reset_folder(store.pretrain_path(pre))
    outcomes: list[Outcome] = []
    progress = progress or SweepProgress(total=len(work.runs) + len(work.pretrainings))
    with progress:
        if work.pretrainings:
            outcomes += executor.map(work.pretrainings, store, progress)
        failed_pre = {o.id: o for o in outcomes if o.kind == "pretrain" and o.status == "failed"}
        for pre in plan.pretrainings:
            if pre.key not in failed_pre and pretrain_state(pre, store) is RunState.FAILED:
                err = read_json(store.pretrain_path(pre) / ERROR_FILE) or {}
                failed_pre[pre.key] = Outcome(
                    "pretrain", pre.key, "failed", pre.label(), 0.0, err.get("message", "")
                )
        doomed = _fail_dependents(work.runs, failed_pre, store)
        for o in doomed:
            progress.advance(o)
        doomed_ids = {o.id for o in doomed}
        outcomes += doomed
        outcomes += executor.map([s for s in work.runs if s.run_id not in doomed_ids], store, progress)
    return SweepReport(
        plan_size=len(plan.runs),
        pretrain_size=len(plan.pretrainings),
        outcomes=outcomes,
        skipped_complete=len(work.complete),
        skipped_failed=len(work.failed_skipped),
        seconds=time.time() - start,
    )


def clean_leftovers(store: ResultsStore) -> list[Path]:
    """Remove the temporary files that killed processes left in the results folder and its cache."""
    removed = remove_stale_temps(store.root)
    if not store.cache_dir.resolve().is_relative_to(store.root.resolve()):
        removed += remove_stale_temps(store.cache_dir, depth=2)
    return removed


def default_store(
    path: str | os.PathLike = "results", stale_after: float = DEFAULT_STALE_AFTER
) -> ResultsStore:
    """A results store at ``path`` (default ``results/``)."""
    return ResultsStore(Path(path), stale_after=stale_after)
