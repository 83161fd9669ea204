"""The sweep's time estimate from measured costs: calibrated per model on this machine, then finished runs.

A run's seconds are its work times its model's costs: ``steps x step`` plus ``evaluated scans x eval_scan``
(validations on the validation split, then the top-k ensemble on every test scan), plus a fixed set-up
time. The costs come from a calibration (:func:`bench3d2d.engine.calibrate.measure_costs`: a few steps
and evaluation batches, seconds per model, in one-thread CPU seconds), cached in
``RESULTS/calibration.json`` per machine and profile shapes; a worker with several threads divides them
by its threads times :data:`PARALLEL_EFFICIENCY`. Once runs of a model have finished in the results
folder, their median duration under the same profile replaces the calibrated figure for that model. The
wall time of ``jobs`` workers is the makespan of the longest-first schedule (pre-trainings first, then
the runs), which is also the order :func:`longest_first` gives the sweep.
"""

from __future__ import annotations

import heapq
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench3d2d._io import atomic_write_json
from bench3d2d.harness._spec import PretrainSpec, RunSpec, canonical_json, short_hash
from bench3d2d.harness._store import read_json

CALIBRATION_FILE = "calibration.json"
#: Seconds a run or pre-training spends outside steps and evaluation (start-up, data, writing).
SETUP_SECONDS = 8.0
#: Validation and test scans of the built-in benchmarks' training datasets (quick synthetic data, split seed
#: 0; a results folder with finished runs uses their own split records instead).
DEFAULT_SCANS: dict[str, tuple[int, int]] = {
    "synthetic-ga-s-1": (7, 63),
    "synthetic-rpd": (2, 9),
    "synthetic-ga-m": (37, 0),
}
#: Speed-up per thread of one process with several threads over one thread (calibrations are one-thread CPU
#: seconds). An assumption, not yet measured on the sweep's runs (docs/performance.md): a sweep with one
#: worker per core (``--jobs`` = cores, one thread each) needs no such factor.
PARALLEL_EFFICIENCY = 0.8
#: When nothing better is known: a validation split of 7 scans and 60 test scans.
GENERIC_SCANS = (7, 60)


@dataclass(frozen=True)
class Work:
    """What one run or pre-training does: optimiser steps, validations, top-k members and test scans."""

    steps: int
    validations: int
    val_scans: int
    members: int
    test_scans: int

    def seconds(self, step: float, eval_scan: float) -> float:
        """Its duration under costs ``step`` and ``eval_scan`` (seconds)."""
        evaluated = self.validations * self.val_scans + self.members * self.test_scans
        return SETUP_SECONDS + self.steps * step + evaluated * eval_scan


def machine_key() -> str:
    """The machine a calibration holds for: CPU model, core count and torch version."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}|{os.cpu_count()} cores|torch {torch.__version__}"


def effective_profile(model: str, profile: str, recipe: str, hparams: Mapping[str, Any] | None) -> Any:
    """The profile a run of ``model`` trains with (profile < recipe < hparams)."""
    from bench3d2d.engine.recipes import run_profile

    return run_profile(profile, model, recipe, dict(hparams or {}))


def work_of(prof: Any, val_scans: int, test_scans: int, n_train: int = 50) -> Work:
    """The work of a fit under ``prof`` (a step budget, or rounds of ⌊repeats·n/b⌋ for ``n_train`` scans)."""
    if prof.converges:
        steps, every = int(prof.max_steps), int(prof.validate_every)
        first = math.ceil(float(prof.validate_from) * steps - 1e-9)
        ends = range(every, steps + every, every)
        validations = sum(1 for s in ends if min(s, steps) >= first)
        if prof.fail_at is not None and math.ceil(float(prof.fail_at) * steps - 1e-9) < first:
            validations += 1
    else:
        validations = int(prof.rounds)
        steps = validations * prof.steps_in_round(n_train, prof.batch_for("segmentation"))
    return Work(steps, validations, val_scans, int(prof.top_k), test_scans)


def _scan_counts(store: Any, table: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Validation and test scans per training dataset, read from one finished run's split and cases
    (``table``: the store's run table)."""
    out: dict[str, tuple[int, int]] = {}
    for row in table[table["state"] == "complete"].itertuples():
        folder = store.runs_dir / row.run_id
        split = read_json(folder / "split.json") or {}
        if row.train_dataset in out or "n_val_scans" not in split or not (folder / "cases.csv").is_file():
            continue
        cases = pd.read_csv(folder / "cases.csv", usecols=["test_set", "case_id"]).drop_duplicates()
        out[row.train_dataset] = (int(split["n_val_scans"]), len(cases))
    return out


def step_budget(profile: Any) -> float | None:
    """The most optimiser steps a profile trains (None when it depends on the data)."""
    if profile.converges:
        return float(profile.max_steps)
    per_round = profile.steps_per_round or profile.max_steps_per_round
    return float(profile.rounds * per_round) if per_round else None


def step_scale(profile: str, hparams: Mapping[str, Any]) -> float:
    """How many times the steps of ``profile`` a run with ``hparams`` overrides trains (1 when unknown)."""
    from bench3d2d.engine.profiles import get_profile

    if not hparams:
        return 1.0
    base = get_profile(profile)
    try:
        before, after = step_budget(base), step_budget(base.with_overrides(dict(hparams)))
    except (ValueError, TypeError):
        return 1.0
    return after / before if before and after else 1.0


class Estimator:
    """Seconds per run and per pre-training of a plan on this machine (see the module docstring)."""

    def __init__(self, store: Any, threads: int, calibrate: bool = True) -> None:
        self.store, self.threads, self.calibrate = store, max(1, int(threads)), calibrate
        self.path = store.root / CALIBRATION_FILE
        self.cache: dict[str, Any] = read_json(self.path) or {}
        table = store.table()
        self.scans = {**DEFAULT_SCANS, **_scan_counts(store, table)}
        self.finished = table[(table["state"] == "complete") & table["seconds"].notna()]
        self.sources: set[str] = set()

    def costs(self, model: str, prof: Any) -> tuple[float, float]:
        """(seconds per step, seconds per evaluated scan) of ``model`` under ``prof``, calibrated once."""
        shape = {
            k: prof.to_dict()[k] for k in ("depth", "crop", "batch_size", "eval_batch", "amp", "data_size")
        }
        key = f"{machine_key()}|{model}|{short_hash(canonical_json(shape))}"
        entry = self.cache.get(key)
        if entry is None and self.calibrate:
            entry = self._measure(model, prof)
            self.cache[key] = entry
            atomic_write_json(self.path, self.cache)
        if entry is None:
            raise LookupError(f"no calibration of {model} for this machine in {self.path}")
        self.sources.add("calibration")
        speedup = 1.0 if self.threads == 1 else self.threads * PARALLEL_EFFICIENCY
        return float(entry["step"]) / speedup, float(entry["eval_scan"]) / speedup

    def _measure(self, model: str, prof: Any) -> dict[str, float]:
        from bench3d2d.engine.acceleration import retain_freed_memory
        from bench3d2d.engine.calibrate import measure_costs

        retain_freed_memory()  # as the workers do

        return measure_costs(model, prof).to_dict()

    def run_seconds(self, spec: RunSpec) -> float:
        """Seconds for one run: the median of finished runs of its model and budget, else calibrated."""
        prof = effective_profile(spec.model, spec.profile, spec.recipe, spec.hparams)
        same = self.finished[
            (self.finished["model"] == spec.model) & (self.finished["profile"] == spec.profile)
        ]
        if not same.empty:
            self.sources.add("finished runs")
            return float(same["seconds"].median()) * step_scale(spec.profile, spec.hparams)
        val, test = self.scans.get(spec.train_dataset, GENERIC_SCANS)
        return work_of(prof, val, test).seconds(*self.costs(spec.model, prof))

    def pretrain_seconds(self, pre: PretrainSpec) -> float:
        """Seconds for one SSL pre-training (reconstruction costs about what segmentation does)."""
        prof = effective_profile(pre.model, pre.profile, pre.recipe, None)
        val, _ = self.scans.get(pre.source, GENERIC_SCANS)
        return work_of(prof, val, 0).seconds(*self.costs(pre.model, prof))


def makespan(first: Iterable[float], then: Iterable[float], jobs: int) -> float:
    """Wall seconds of ``jobs`` workers that take the longest item first: ``first`` (pre-trainings), then
    ``then`` (runs, which wait for every pre-training)."""
    end = _lpt(sorted(first, reverse=True), [0.0] * max(1, jobs))
    start = max(end) if end else 0.0
    end = _lpt(sorted(then, reverse=True), [start] * max(1, jobs))
    return max(end) if end else 0.0


def _lpt(items: Sequence[float], loads: list[float]) -> list[float]:
    heap = list(loads)
    heapq.heapify(heap)
    for seconds in items:
        heapq.heappush(heap, heapq.heappop(heap) + seconds)
    return heap


def longest_first(runs: Sequence[RunSpec], estimator: Estimator) -> list[RunSpec]:
    """The runs, longest expected first (ties in plan order), so no worker is left alone with a long run."""
    order = {s.run_id: i for i, s in enumerate(runs)}
    return sorted(runs, key=lambda s: (-estimator.run_seconds(s), order[s.run_id]))
