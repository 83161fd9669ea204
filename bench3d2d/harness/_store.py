"""The results store: one folder per run id (private; layout in docs/architecture.md)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from bench3d2d._io import atomic_write_bytes, atomic_write_json
from bench3d2d._lock import DEFAULT_STALE_AFTER, claim_alive
from bench3d2d.harness._spec import PretrainSpec, RunSpec
from bench3d2d.results import (
    ARTEFACTS_KEY,
    CACHE_DIR,
    CACHE_ENV,
    CASE_COLUMNS,
    CASES_FILE,
    CHECKPOINT_DIR,
    CLAIM_FILE,
    ERROR_FILE,
    LOG_FILE,
    OPTIONAL_CASE_COLUMNS,
    PRETRAIN_DIR,
    RESULT_FILE,
    RUNS_DIR,
    SPEC_FILE,
    SPLITS_DIR,
    artefact_checksums,
    verify_artefacts,
)


class RunState(str, Enum):
    """Where a run stands in the store."""

    COMPLETE = "complete"  # result.json written: never recomputed
    FAILED = "failed"  # error.json written by the last attempt
    RUNNING = "running"  # a live worker holds its claim
    INCOMPLETE = "incomplete"  # started (log or checkpoints exist), interrupted; resumes on the next sweep
    PENDING = "pending"  # planned (spec.json only), never started


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing or not a valid JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_cases(cases: pd.DataFrame, spec: RunSpec | None = None) -> pd.DataFrame:
    """Validate a long per-case table and return it with the standard column order."""
    if not isinstance(cases, pd.DataFrame):
        raise TypeError(f"the run function must return a pandas DataFrame, not {type(cases).__name__}")
    cases = cases.copy()
    for optional in OPTIONAL_CASE_COLUMNS:  # a backend that knows no patients leaves them empty
        if optional not in cases.columns:
            cases[optional] = ""
    missing = [c for c in CASE_COLUMNS if c not in cases.columns]
    if missing:
        raise ValueError(
            f"per-case table lacks the column(s) {', '.join(missing)} "
            f"(has: {', '.join(map(str, cases.columns))})"
        )
    if spec is not None and len(cases):
        wrong = cases.loc[cases["model"].astype(str) != spec.model, "model"].unique()
        if len(wrong):
            raise ValueError(
                f"per-case table of run {spec.run_id} names model(s) {list(wrong)}, not {spec.model!r}"
            )
    extra = [c for c in cases.columns if c not in CASE_COLUMNS]
    return cases[list(CASE_COLUMNS) + extra].reset_index(drop=True)


def summarise(cases: pd.DataFrame) -> list[dict[str, Any]]:
    """Mean, median, count and NaN count of each metric per test set (for result.json)."""
    if cases.empty:
        return []
    grouped = cases.groupby(["test_set", "metric"], sort=True)["value"]
    table = pd.DataFrame(
        {
            "mean": grouped.mean(),
            "median": grouped.median(),
            "n": grouped.count(),
            "n_nan": grouped.apply(lambda v: int(v.isna().sum())),
        }
    ).reset_index()
    rows = table.to_dict(orient="records")
    for row in rows:
        for k in ("mean", "median"):
            row[k] = None if pd.isna(row[k]) else float(row[k])
        row["n"], row["n_nan"] = int(row["n"]), int(row["n_nan"])
    return rows


@dataclass
class Damage:
    """A complete run or pre-training whose files differ from the checksums in its ``result.json``."""

    kind: str  # "run" or "pretrain"
    id: str
    problems: list[str]


def reset_folder(folder: Path) -> None:
    """Remove a run's or pre-training's result (first, so that it no longer counts as complete) and
    everything else but its ``spec.json``."""
    folder = Path(folder)
    (folder / RESULT_FILE).unlink(missing_ok=True)
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name == SPEC_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_error_file(
    folder: Path, exc: BaseException, ident: Mapping[str, Any], info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``error.json`` of a failed run or pre-training (the library's one error-record writer).

    ``ident`` names what failed (``{"run_id": ...}`` or ``{"key": ...}``); the record holds the error
    type, message and traceback, the host, pid and time, and ``info`` (seconds, cause, ...).
    """
    error = {
        "status": "failed",
        **dict(ident),
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **dict(info or {}),
    }
    atomic_write_json(Path(folder) / ERROR_FILE, error)
    return error


def _folder_damage(folder: Path, quick: bool = False) -> list[str]:
    """What is damaged in one run or pre-training folder: an unreadable ``result.json``, or artefacts
    that differ from the checksums of a complete one (nothing for a folder without a result).
    ``quick`` reads only the files modified after ``result.json`` (see ``verify_artefacts``)."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return []
    result = read_json(path)
    if result is None:
        return [f"{path}: unreadable (not a JSON object: truncated or edited)"]
    if result.get("status") != "complete":
        return []
    return verify_artefacts(folder, result, unchanged_before=path.stat().st_mtime if quick else None)


class ResultsStore:
    """The folder ``RESULTS`` with ``runs/<run_id>/``, ``pretrain/<key>/`` and ``splits/``."""

    def __init__(self, root: str | os.PathLike, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.root = Path(root)
        self.stale_after = stale_after

    # -- paths --------------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        """``RESULTS/runs``."""
        return self.root / RUNS_DIR

    @property
    def pretrain_dir(self) -> Path:
        """``RESULTS/pretrain`` (shared SSL weights)."""
        return self.root / PRETRAIN_DIR

    @property
    def splits_dir(self) -> Path:
        """``RESULTS/splits`` (each dataset's patient-wise split)."""
        return self.root / SPLITS_DIR

    @property
    def cache_dir(self) -> Path:
        """Prepared-data cache: ``$BENCH3D2D_CACHE_DIR``, else ``RESULTS/cache``."""
        env = os.environ.get(CACHE_ENV)
        return Path(env) if env else self.root / CACHE_DIR

    def run_dir(self, run_id: str) -> Path:
        """The folder of one run."""
        return self.runs_dir / run_id

    def pretrain_path(self, pre: PretrainSpec) -> Path:
        """The folder of one pre-training."""
        return self.pretrain_dir / pre.key

    # -- specs --------------------------------------------------------------------------------------
    def write_spec(self, spec: RunSpec) -> Path:
        """Create the run folder with ``spec.json`` (kept if already there and identical)."""
        folder = self.run_dir(spec.run_id)
        path = folder / SPEC_FILE
        existing = read_json(path)
        if existing is not None:
            if RunSpec.from_dict(existing).run_id != spec.run_id:
                raise ValueError(f"{path} holds another run's spec")
            if existing == json.loads(json.dumps(spec.to_dict())):
                return folder
        atomic_write_json(path, spec.to_dict())
        return folder

    def read_spec(self, run_id: str) -> RunSpec:
        """The spec stored for ``run_id``."""
        path = self.run_dir(run_id) / SPEC_FILE
        data = read_json(path)
        if data is None:
            raise FileNotFoundError(f"no readable run spec at {path}")
        spec = RunSpec.from_dict(data)
        if spec.run_id != run_id:
            raise ValueError(f"{path} describes run {spec.run_id}, not {run_id}")
        return spec

    def run_ids(self) -> list[str]:
        """Ids of every run folder holding a spec."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.runs_dir.glob(f"*/{SPEC_FILE}"))

    def specs(self) -> Iterator[RunSpec]:
        """Every stored spec (unreadable ones are skipped)."""
        for run_id in self.run_ids():
            try:
                yield self.read_spec(run_id)
            except (FileNotFoundError, ValueError):
                continue

    # -- state --------------------------------------------------------------------------------------
    def result(self, run_id: str) -> dict[str, Any] | None:
        """``result.json`` of a complete run, else None."""
        folder = self.run_dir(run_id)
        data = read_json(folder / RESULT_FILE)
        if data is None or data.get("status") != "complete" or not (folder / CASES_FILE).is_file():
            return None
        return data

    def is_complete(self, run_id: str) -> bool:
        """Whether the run's result was written (a complete run is never recomputed)."""
        return self.result(run_id) is not None

    def error(self, run_id: str) -> dict[str, Any] | None:
        """``error.json`` of a failed run, else None."""
        return read_json(self.run_dir(run_id) / ERROR_FILE)

    def claim_path(self, run_id: str) -> Path:
        """The claim file of a run."""
        return self.run_dir(run_id) / CLAIM_FILE

    def state(self, run_id: str) -> RunState:
        """Complete, failed, running, incomplete or pending."""
        if self.is_complete(run_id):
            return RunState.COMPLETE
        folder = self.run_dir(run_id)
        if claim_alive(folder / CLAIM_FILE, self.stale_after):
            return RunState.RUNNING
        if (folder / ERROR_FILE).is_file():
            return RunState.FAILED
        if (folder / LOG_FILE).is_file() or (folder / CHECKPOINT_DIR).is_dir():
            return RunState.INCOMPLETE
        return RunState.PENDING

    # -- results ------------------------------------------------------------------------------------
    def write_result(self, spec: RunSpec, cases: pd.DataFrame, info: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``cases.csv`` then, last and atomically, ``result.json``; refuses to overwrite one."""
        folder = self.run_dir(spec.run_id)
        if self.is_complete(spec.run_id):
            raise FileExistsError(f"run {spec.run_id} is already complete; its result is never overwritten")
        cases = check_cases(cases, spec)
        buf = io.StringIO()
        cases.to_csv(buf, index=False)
        data = buf.getvalue().encode("utf-8")
        atomic_write_bytes(folder / CASES_FILE, data)
        result = {
            "status": "complete",
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "cases_file": CASES_FILE,
            "cases_rows": len(cases),
            "cases_sha256": hashlib.sha256(data).hexdigest(),
            "summary": summarise(cases),
            **dict(info),
            ARTEFACTS_KEY: artefact_checksums(folder),
        }
        (folder / ERROR_FILE).unlink(missing_ok=True)
        atomic_write_json(folder / RESULT_FILE, result)
        return result

    def write_error(self, spec: RunSpec, exc: BaseException, info: Mapping[str, Any]) -> dict[str, Any]:
        """Record a failed attempt: error type, message and traceback."""
        return write_error_file(self.run_dir(spec.run_id), exc, {"run_id": spec.run_id}, info)

    def reset_run(self, run_id: str) -> None:
        """Remove everything of a run but its ``spec.json`` (``result.json`` first), to run it afresh."""
        reset_folder(self.run_dir(run_id))

    def verify(
        self, run_ids: Iterable[str] | None = None, pretrainings: bool = True, quick: bool = False
    ) -> list[Damage]:
        """Every complete run and pre-training whose artefacts differ from the checksums in its result,
        and every ``result.json`` that is there but cannot be read (a damaged record).

        Checks ``cases.csv``, predictions and checkpoints of runs (all, or ``run_ids``), and the files
        of pre-trainings (unless ``pretrainings`` is False). ``quick`` (a plain rerun's check) hashes
        only files modified after their ``result.json``; missing files are always found.
        """
        damaged = []
        for run_id in self.run_ids() if run_ids is None else list(run_ids):
            problems = _folder_damage(self.run_dir(run_id), quick)
            if problems:
                damaged.append(Damage("run", run_id, problems))
        folders = sorted(self.pretrain_dir.iterdir()) if pretrainings and self.pretrain_dir.is_dir() else []
        for folder in folders:
            problems = _folder_damage(folder, quick)
            if problems:
                damaged.append(Damage("pretrain", folder.name, problems))
        return damaged

    def cases(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """The long per-case table of complete runs (all of them by default)."""
        ids = self.run_ids() if run_ids is None else run_ids
        frames = [
            pd.read_csv(self.run_dir(r) / CASES_FILE, dtype={"case_id": str})
            for r in ids
            if self.is_complete(r)
        ]
        if not frames:
            return pd.DataFrame(columns=list(CASE_COLUMNS))
        return pd.concat(frames, ignore_index=True)

    def table(self) -> pd.DataFrame:
        """One row per stored run: spec fields, state, wall seconds, error message."""
        rows = []
        for spec in self.specs():
            state = self.state(spec.run_id)
            row: dict[str, Any] = {
                "run_id": spec.run_id,
                "benchmark": spec.benchmark,
                "model": spec.model,
                "pretrain": spec.pretrain,
                "train_dataset": spec.train_dataset,
                "fraction": spec.fraction,
                "seed": spec.seed,
                "profile": spec.profile,
                "tuned": bool(spec.hparams),
                "state": state.value,
                "seconds": None,
                "error": "",
            }
            if state is RunState.COMPLETE:
                row["seconds"] = (self.result(spec.run_id) or {}).get("seconds")
            elif state is RunState.FAILED:
                err = self.error(spec.run_id) or {}
                row["error"] = f"{err.get('type', '?')}: {err.get('message', '')}"
            rows.append(row)
        columns = [
            "run_id", "benchmark", "model", "pretrain", "train_dataset", "fraction", "seed", "profile",
            "tuned", "state", "seconds", "error",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)
