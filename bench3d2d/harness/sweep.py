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

from bench3d2d._io import remove_stale_temps
from bench3d2d._lock import DEFAULT_STALE_AFTER
from bench3d2d.harness._devices import parallel_devices, parse_devices
from bench3d2d.harness._estimate import Estimator, longest_first, makespan, step_scale
from bench3d2d.harness._plan import (
    BENCHMARKS,
    DEFAULT_DATASETS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEEDS,
    Benchmark,
    Plan,
    PlanOptions,
    contract_problems,
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
    failed_for_disk,
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
    "contract_problems",
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
    """Runs and pre-trainings to execute: not complete, and not failed unless ``retry_failed`` or the
    failure was the disk's (full or read-only: retried once the disk is fixed, see ``failed_for_disk``).

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
        elif state is RunState.FAILED and not retry_failed and not failed_for_disk(store.error(spec.run_id)):
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
        elif pre.key in needed and (
            state is not RunState.FAILED or retry_failed or _pre_disk_failed(pre, store)
        ):
            work.pretrainings.append(pre)
    return work


def _pre_disk_failed(pre: PretrainSpec, store: ResultsStore) -> bool:
    return failed_for_disk(read_json(store.pretrain_path(pre) / ERROR_FILE))


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


#: Rough seconds per run and per pre-training, used only where no calibration may be made
#: (``BENCH3D2D_CALIBRATE=0``, as in the test suite) and the results folder has no timings yet.
#: smoke: medians of the whole smoke sweep alone on a 2-core CPU with native bf16; standard: the
#: calibrated estimate of the default sweep on the 2-core development machine (docs/performance.md);
#: paper: a guess for one GPU.
FALLBACK_SECONDS: dict[str, tuple[float, float]] = {
    "standard": (200.0, 200.0),
    "smoke": (14.0, 13.0),
    "paper": (4 * 3600.0, 8 * 3600.0),
}
#: Set to 0 to estimate without calibrating (the fallback table instead).
CALIBRATE_ENV = "BENCH3D2D_CALIBRATE"


def worker_threads(jobs: int) -> int:
    """Threads each worker computes with: one when several share the machine, else the process's own."""
    if jobs > 1:
        return 1
    return int(os.environ.get("BENCH3D2D_THREADS") or 0) or torch_threads()


def torch_threads() -> int:
    """torch's intra-op thread count in this process."""
    import torch

    return torch.get_num_threads()


def _estimator(store: ResultsStore, jobs: int) -> Estimator:
    return Estimator(store, worker_threads(jobs), calibrate=os.environ.get(CALIBRATE_ENV, "1") != "0")


def item_seconds(
    work: Work, store: ResultsStore, jobs: int = 1
) -> tuple[dict[str, float], dict[str, float], str]:
    """Estimated seconds of every run (by run id) and pre-training (by key) in ``work``, and how they were
    estimated (calibration on this machine, finished runs, or the fallback table)."""
    est = _estimator(store, jobs)
    used_fallback = False

    def guarded(fn: Any, item: Any, profile: str, which: int) -> float:
        nonlocal used_fallback
        try:
            return fn(item)
        except (LookupError, ValueError, TypeError):  # no calibration, or overrides the dry run refuses
            used_fallback = True
            scale = step_scale(item.profile, item.hparams) if which == 0 else 1.0
            return FALLBACK_SECONDS.get(profile, FALLBACK_SECONDS["paper"])[which] * scale

    runs = {s.run_id: guarded(est.run_seconds, s, s.profile, 0) for s in work.runs}
    pres = {p.key: guarded(est.pretrain_seconds, p, p.profile, 1) for p in work.pretrainings}
    words = {
        "calibration": "a calibration on this machine",
        "finished runs": "timings of complete runs in the results folder",
    }
    how = [words[k] for k in ("finished runs", "calibration") if k in est.sources]
    if used_fallback:
        how.append("the per-profile fallback table")
    return runs, pres, " and ".join(how) or "nothing to run"


def estimate_seconds(
    work: Work, store: ResultsStore, jobs: int = 1, devices: Sequence[str] = ()
) -> tuple[float, str]:
    """Estimated wall seconds for ``work`` with ``jobs`` parallel workers, and how it was estimated: the
    makespan of the longest-first schedule of the items' estimated seconds (``_estimate``). With a device
    list (``--devices``), workers that share a device do not count twice."""
    runs, pres, how = item_seconds(work, store, jobs)
    return makespan(pres.values(), runs.values(), parallel_devices(jobs, devices)), how


@dataclass
class SweepReport:
    """The outcome of :func:`run_sweep`."""

    plan_size: int
    pretrain_size: int
    outcomes: list[Outcome]
    skipped_complete: int
    skipped_failed: int
    seconds: float
    damaged: list[Damage] = field(default_factory=list)

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
        cause = "disk" if _pre_disk_failed(pre, store) else "pretraining"  # a disk failure is retried
        store.write_error(spec, exc, {"seconds": 0.0, "cause": cause})
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

    Complete runs and pre-trainings whose files no longer match their checksums are not redone but
    listed in ``SweepReport.damaged`` (``status --repair`` redoes exactly those).

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
    damaged = store.verify(work.complete, quick=True)  # reported (status --repair redoes them), not redone
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
        todo = [s for s in work.runs if s.run_id not in doomed_ids]
        outcomes += executor.map(_longest_first(todo, store, executor), store, progress)
    return SweepReport(
        plan_size=len(plan.runs),
        pretrain_size=len(plan.pretrainings),
        outcomes=outcomes,
        skipped_complete=len(work.complete),
        skipped_failed=len(work.failed_skipped),
        seconds=time.time() - start,
        damaged=damaged,
    )


def _longest_first(runs: list[RunSpec], store: ResultsStore, executor: Any) -> list[RunSpec]:
    """The runs longest expected first when several workers share them (plan order otherwise, or when
    no estimate can be made without calibrating)."""
    jobs = int(getattr(executor, "jobs", 1) or 1)
    if jobs < 2 or len(runs) < 2:
        return runs
    try:
        return longest_first(runs, _estimator(store, jobs))
    except LookupError:
        return runs


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
