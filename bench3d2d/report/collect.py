"""Read a results folder (``docs/architecture.md``, "The results store") into one long per-case table.

Everything the report knows about the file layout is in this module. Each run folder
``RESULTS/runs/<run_id>/`` is classified as

* ``complete``: ``result.json`` is a JSON object with ``status == "complete"``; its ``cases.csv`` rows
  enter the tables;
* ``failed``: ``error.json`` is there (error type, message, traceback) and no complete result;
* ``incomplete``: started (``log.txt`` or ``checkpoints/``) but neither result nor error: running, or
  interrupted (a rerun of the sweep resumes it);
* ``pending``: only a ``spec.json`` (planned, never started);
* ``invalid``: a result or case file that cannot be read or is not ours (truncated, foreign).

Nothing is dropped silently: every file that cannot be used, every row of a ``cases.csv`` that cannot
be parsed and every run whose rows are left out of the tables yields a warning naming the file (and
row), and every run is listed with its status in :meth:`ResultsCollection.runs_table`.

Instead of a folder, a single per-case table (``.csv`` or ``.parquet`` with the columns of
:data:`bench3d2d.evaluation.statistics.CASE_COLUMNS`) is accepted as well; it has no runs and no
prediction maps.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench3d2d._io import safe_name
from bench3d2d.results import (
    BACKGROUND_KEY,
    CASE_COLUMNS,
    CASE_ID_KEY,
    CASES_FILE,
    ERROR_FILE,
    OPTIONAL_CASE_COLUMNS,
    PREDICTION_KEYS,
    RESULT_FILE,
    RUNS_DIR,
    SPEC_FILE,
    verify_artefacts,
)
from bench3d2d.results import PREDICTION_DIR as PREDICTIONS_DIR

COMPLETE, FAILED, INCOMPLETE, PENDING, INVALID = "complete", "failed", "incomplete", "pending", "invalid"
STATUSES = (COMPLETE, FAILED, INCOMPLETE, PENDING, INVALID)
#: What a status means, for the runs table when there is no error or problem to show.
STATUS_NOTES = {
    INCOMPLETE: "started, no result yet: running, or interrupted (the next `bench3d2d run` resumes it)",
    PENDING: "planned, never started",
}


#: Output column order of the long table: the documented columns, then the run they came from.
TABLE_COLUMNS = (*CASE_COLUMNS, "run_id")
_TEXT_COLUMNS = ("train_dataset", "test_set", "case_id", "model", "pretrain", "metric")
_NAN_TEXT = {"", "nan", "NaN", "NAN", "none", "None", "null", "NA", "N/A"}
_MAX_ROWS_NAMED = 5


@dataclass
class RunRecord:
    """One run folder and what became of it."""

    run_id: str
    path: Path
    status: str
    spec: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    result: dict[str, Any] = field(default_factory=dict)  # result.json of a complete run (timings, cost)
    n_rows: int = 0  # rows of this run in the long table
    problems: list[str] = field(default_factory=list)

    def field(self, *names: str) -> Any:
        """First of ``names`` found in the spec (None if absent)."""
        for name in names:
            if name in self.spec:
                return self.spec[name]
        return None

    def to_row(self) -> dict[str, Any]:
        """One row of the runs table."""
        err = self.error or {}
        message = err.get("message") or err.get("error") or ""
        kind = err.get("type") or err.get("error_type") or ""
        error = f"{kind}: {message}".strip(": ") if self.error is not None else ""
        problems = "; ".join(self.problems)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "model": self.field("model"),
            "pretrain": self.field("pretrain", "pretraining"),
            "train_dataset": self.field("train_dataset", "dataset"),
            "fraction": self.field("fraction"),
            "seed": self.field("seed"),
            "profile": self.field("profile"),
            "rows": self.n_rows,
            "error": error,
            "problems": problems,
            "detail": "; ".join(t for t in (error, problems) if t) or STATUS_NOTES.get(self.status, ""),
        }


@dataclass
class ResultsCollection:
    """The long per-case table of all complete runs, every run's status, and the warnings met."""

    source: Path
    cases: pd.DataFrame
    runs: list[RunRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    board_cost: pd.DataFrame = field(default_factory=pd.DataFrame)  # cost.csv of a published board source

    def runs_with(self, status: str) -> list[RunRecord]:
        """The runs of one status."""
        return [r for r in self.runs if r.status == status]

    def runs_table(self) -> pd.DataFrame:
        """Every run with its status, spec fields, rows used, error and problems."""
        cols = [
            "run_id",
            "status",
            "model",
            "pretrain",
            "train_dataset",
            "fraction",
            "seed",
            "profile",
            "rows",
            "error",
            "problems",
            "detail",
        ]
        return pd.DataFrame([r.to_row() for r in self.runs], columns=cols)

    def prediction_path(self, run_id: str, test_set: str, case_id: str) -> Path | None:
        """The prediction file of a case in a run, or None when it does not exist.

        Looks the case up by id: ``predictions/<safe_name(test_set)>/<safe_name(case_id)>.npz`` (the
        safe name carries a hash of the real id), whose recorded ``case_id`` must match. Files of older
        runs (names as written, or stripped to ``[A-Za-z0-9._-]`` without a hash, no recorded id) are
        used only where the name is the id itself, so that two ids that strip to one name never
        show each other's prediction.
        """
        run = next((r for r in self.runs if r.run_id == run_id), None)
        if run is None:
            return None
        folder = run.path / PREDICTIONS_DIR
        case_id, test_set = str(case_id), str(test_set)
        for t in dict.fromkeys((safe_name(test_set), test_set, _legacy_name(test_set))):
            for c in dict.fromkeys((safe_name(case_id), case_id, _legacy_name(case_id))):
                path = folder / t / f"{c}.npz"
                if not path.is_file():
                    continue
                recorded = _recorded_case_id(path)
                if recorded == case_id or (recorded is None and c == case_id):
                    return path
        return None


def _legacy_name(name: str) -> str:
    """The file name older versions gave an id: other characters stripped, no hash."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def _recorded_case_id(path: Path) -> str | None:
    """The case id a prediction file records (None for files of older versions, or unreadable ones)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data[CASE_ID_KEY]) if CASE_ID_KEY in data.files else None
    except Exception:  # an unreadable file is reported when it is read for a figure
        return None


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to the results folder, for messages."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_json(path: Path, root: Path, problems: list[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``; None (and a problem naming the file) if unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{_rel(path, root)}: cannot be read ({exc})")
        return None
    except json.JSONDecodeError as exc:
        problems.append(f"{_rel(path, root)}: not valid JSON ({exc.msg} at line {exc.lineno}), truncated?")
        return None
    if not isinstance(data, dict):
        problems.append(f"{_rel(path, root)}: expected a JSON object, found {type(data).__name__}")
        return None
    return data


def _name_rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_NAMED])
    return shown + (f" and {len(rows) - _MAX_ROWS_NAMED} more" if len(rows) > _MAX_ROWS_NAMED else "")


def validate_cases(raw: pd.DataFrame, where: str) -> tuple[pd.DataFrame, list[str]]:
    """Typed long table from a raw (all-text) one; bad rows are removed and named in the problems.

    Row numbers in messages are file lines (the header is line 1). ``value`` may be empty or ``nan``
    (a metric that is undefined for the case, e.g. HD95 of an empty mask): that is a NaN, not an error.
    """
    problems: list[str] = []
    raw = raw.copy()
    for optional in OPTIONAL_CASE_COLUMNS:  # older results: no patient ids (the report falls back to scans)
        if optional not in raw.columns:
            raw[optional] = ""
    missing = [c for c in CASE_COLUMNS if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:12]))
        raise ValueError(
            f"{where}: not a per-case table: column(s) {', '.join(missing)} missing (found: {found})"
        )
    df = raw.loc[:, list(CASE_COLUMNS)].copy()
    lines = np.arange(len(df)) + 2
    bad = np.zeros(len(df), dtype=bool)

    def flag(mask: np.ndarray, what: str) -> None:
        nonlocal bad
        new = mask & ~bad
        if new.any():
            problems.append(f"{where}: line(s) {_name_rows(list(lines[new]))}: {what}; row(s) left out")
        bad |= mask

    flag(df.isna().any(axis=1).to_numpy(), "fewer fields than columns (truncated file?)")
    text = df.loc[:, list(_TEXT_COLUMNS)].astype("string")
    empty = text.apply(lambda s: s.str.strip()).eq("").fillna(True)
    flag(empty.any(axis=1).to_numpy(), "a name field is empty")
    fraction = pd.to_numeric(df["fraction"], errors="coerce")
    flag(~np.isfinite(fraction.to_numpy(dtype=float)), "fraction is not a number")
    seed = pd.to_numeric(df["seed"], errors="coerce")
    seed_ok = np.isfinite(seed.to_numpy(dtype=float))
    seed_ok[seed_ok] = seed[seed_ok].to_numpy() == np.round(seed[seed_ok].to_numpy())
    flag(~seed_ok, "seed is not an integer")
    value_text = df["value"].astype("string").str.strip()
    value = pd.to_numeric(value_text.where(~value_text.isin(_NAN_TEXT)), errors="coerce")
    is_nan_text = value_text.isin(_NAN_TEXT).fillna(True)  # missing fields were flagged above
    flag((value.isna() & ~is_nan_text).to_numpy(), "value is not a number")
    flag(np.isinf(value.to_numpy(dtype=float)), "value is infinite")

    patient = df["patient_id"].astype("string").str.strip()
    out = pd.DataFrame(
        {
            **{c: df[c].astype(str).str.strip() for c in _TEXT_COLUMNS},
            "patient_id": patient.where(~patient.isin(_NAN_TEXT), "").fillna("").astype(str),
            "fraction": fraction.astype(float),
            "seed": seed.fillna(-1).astype("int64"),
            "value": value.astype(float),
        }
    )
    out = out.loc[~bad, list(CASE_COLUMNS)].reset_index(drop=True)
    return out, problems


def read_cases_file(path: Path, where: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate one per-case table (CSV or Parquet); raises ValueError if it is unusable."""
    where = where or str(path)
    problems: list[str] = []
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise ValueError(f"{where}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
        if "value" in raw.columns:  # a NaN metric in Parquet is a value, not a missing field
            raw["value"] = raw["value"].astype("string").fillna("nan")
        raw = raw.astype({c: "string" for c in raw.columns if c in CASE_COLUMNS})
    else:
        long_lines: list[int] = []

        def on_bad(fields: list[str]) -> None:
            long_lines.append(len(fields))
            return None

        try:
            raw = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[],
                engine="python",
                on_bad_lines=on_bad,
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise ValueError(f"{where}: empty file (no header)") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise ValueError(f"{where}: cannot be read as CSV ({exc})") from None
        if long_lines:
            problems.append(f"{where}: {len(long_lines)} line(s) with too many fields; left out")
        if raw.empty and not set(CASE_COLUMNS) - set(raw.columns):
            problems.append(f"{where}: has a header but no rows")
    table, row_problems = validate_cases(_long_form(raw), where)
    return table, problems + row_problems


def _long_form(raw: pd.DataFrame) -> pd.DataFrame:
    """A board's wide ``cases.csv`` (one column per metric, no ``metric``/``value``) in the long form;
    a long table unchanged. Empty metric cells of the wide form are NaN values, except where a metric
    is empty on every row of a test set (not measured there: no rows)."""
    keys = [c for c in (*CASE_COLUMNS, "run_id") if c in raw.columns and c not in ("metric", "value")]
    if "metric" in raw.columns or "value" in raw.columns or "case_id" not in raw.columns:
        return raw
    metrics = [c for c in raw.columns if c not in keys]
    if not metrics:
        return raw
    long = raw.melt(id_vars=keys, value_vars=metrics, var_name="metric", value_name="value")
    empty = long["value"].isna() | long["value"].astype("string").str.strip().isin(_NAN_TEXT).fillna(True)
    # a metric empty on every row of a test set was not measured there (per-rater metrics of a test set
    # with one rater): no rows; an empty cell among written values is a NaN value (HD95, both masks empty)
    by = [c for c in ("test_set",) if c in long.columns] + ["metric"]
    unmeasured = empty.groupby([long[c] for c in by]).transform("all")
    long = long.loc[~unmeasured].copy()
    long["value"] = long["value"].fillna("nan")
    return long


def _classify(run_dir: Path, root: Path) -> tuple[RunRecord, pd.DataFrame | None]:
    """Status of one run folder and, for a complete run, its validated case rows."""
    problems: list[str] = []
    spec_path, result_path = run_dir / SPEC_FILE, run_dir / RESULT_FILE
    error_path, cases_path = run_dir / ERROR_FILE, run_dir / CASES_FILE
    spec = _read_json(spec_path, root, problems) if spec_path.exists() else None
    run = RunRecord(run_id=run_dir.name, path=run_dir, status=INCOMPLETE, spec=spec or {})
    if spec is None and not spec_path.exists():
        problems.append(f"{_rel(spec_path, root)}: missing")

    result = _read_json(result_path, root, problems) if result_path.exists() else None
    error = _read_json(error_path, root, problems) if error_path.exists() else None
    complete = result is not None and result.get("status") == COMPLETE
    if result is not None and not complete:
        problems.append(
            f"{_rel(result_path, root)}: status is {result.get('status')!r}, not 'complete' "
            "(foreign or unfinished result file)"
        )
    table = None
    if result is not None and complete:
        if error is not None:
            problems.append(
                f"{_rel(error_path, root)}: left over from an earlier failed attempt; "
                "the complete result is used"
            )
        if not cases_path.exists():
            problems.append(f"{_rel(cases_path, root)}: missing although the run is complete")
            run.status = INVALID
        else:
            try:
                table, row_problems = read_cases_file(cases_path, _rel(cases_path, root))
                problems += _checksum_problems(cases_path, result, root) + row_problems
                run.status = COMPLETE
                run.result = result
            except ValueError as exc:
                problems.append(str(exc))
                run.status = INVALID
    elif error_path.exists():
        run.status = FAILED
        run.error = error if error is not None else {"type": "unreadable error file", "message": ""}
    elif result_path.exists():
        run.status = INVALID
    elif (run_dir / "log.txt").exists() or (run_dir / "checkpoints").exists():
        run.status = INCOMPLETE
    else:
        run.status = PENDING
    run.problems = problems
    if table is not None:
        table = _check_against_spec(table, run, root)
        table["run_id"] = run.run_id
        run.n_rows = len(table)
    return run, table


def _checksum_problems(cases_path: Path, result: dict[str, Any], root: Path) -> list[str]:
    """A problem when ``cases.csv`` differs from the checksum or row count ``result.json`` recorded."""
    out = []
    expected = result.get("cases_sha256")
    if isinstance(expected, str):
        actual = hashlib.sha256(cases_path.read_bytes()).hexdigest()
        if actual != expected:
            out.append(
                f"{_rel(cases_path, root)}: does not match the checksum in result.json (changed or "
                "truncated after the run finished); its readable rows are used"
            )
    return out


def _check_against_spec(table: pd.DataFrame, run: RunRecord, root: Path) -> pd.DataFrame:
    """Note rows whose model, pre-training, train dataset, fraction or seed differ from spec.json."""
    checks = {
        "model": ("model",),
        "pretrain": ("pretrain",),
        "train_dataset": ("train_dataset",),
        "fraction": ("fraction",),
        "seed": ("seed",),
    }
    where = _rel(run.path / CASES_FILE, root)
    for column, names in checks.items():
        expected = run.field(*names)
        if expected is None:
            continue
        values = table[column].unique()
        if column in ("fraction", "seed"):
            try:
                differs = [v for v in values if not math.isclose(float(v), float(expected))]
            except (TypeError, ValueError):
                differs = list(values)
        else:
            differs = [v for v in values if str(v) != str(expected)]
        if differs:
            run.problems.append(
                f"{where}: {column} {differs[:3]} differs from spec.json ({expected!r}); "
                "the rows are kept as written"
            )
    return table


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype=float if c in ("fraction", "value") else "int64" if c == "seed" else object)
            for c in TABLE_COLUMNS
        }
    )


def collect(results: str | Path) -> ResultsCollection:
    """Read a results folder (or one per-case CSV/Parquet file) into a :class:`ResultsCollection`."""
    root = Path(results)
    if not root.exists():
        raise FileNotFoundError(f"results not found: {root}")
    if root.is_file():
        table, problems = read_cases_file(root)
        table["run_id"] = ""
        return ResultsCollection(source=root, cases=table.loc[:, list(TABLE_COLUMNS)], warnings=problems)
    runs_dir = root / RUNS_DIR
    if not runs_dir.is_dir():
        raise FileNotFoundError(
            f"{root} is not a results folder: it has no '{RUNS_DIR}/' folder "
            f"(expected {RUNS_DIR}/<run_id>/cases.csv, see docs/architecture.md)"
        )
    warnings: list[str] = []
    runs: list[RunRecord] = []
    tables: list[pd.DataFrame] = []
    for entry in sorted(runs_dir.iterdir()):
        if not entry.is_dir():
            warnings.append(f"{_rel(entry, root)}: not a run folder; ignored")
            continue
        run, table = _classify(entry, root)
        runs.append(run)
        warnings += run.problems
        if table is not None and len(table):
            tables.append(table)
    cases = pd.concat(tables, ignore_index=True) if tables else _empty_table()
    cases = cases.loc[:, list(TABLE_COLUMNS)]
    for status, what in (
        (FAILED, "failed"),
        (INCOMPLETE, "incomplete (started, no result yet)"),
        (PENDING, "pending (never started)"),
        (INVALID, "invalid"),
    ):
        ids = [r.run_id for r in runs if r.status == status]
        if ids:
            warnings.append(
                f"{len(ids)} run(s) {what}, not in the tables: {', '.join(ids[:10])}"
                + (" ..." if len(ids) > 10 else "")
                + " (listed under 'Runs')"
            )
    warnings += duplicate_warnings(cases)
    if not runs:
        warnings.append(f"{_rel(runs_dir, root)}: no run folders")
    return ResultsCollection(source=root, cases=cases, runs=runs, warnings=warnings)


class DamagedResultsError(ValueError):
    """Complete runs whose files differ from the checksums in their ``result.json``; the report refuses."""


def damaged_runs(results: str | Path) -> dict[str, list[str]]:
    """Complete runs whose ``cases.csv`` or prediction files differ from their recorded checksums.

    ``{run_id: [problem naming the file, ...]}``; empty for a single per-case table.
    """
    root = Path(results)
    runs_dir = root / RUNS_DIR
    if not runs_dir.is_dir():
        return {}
    out: dict[str, list[str]] = {}
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        try:
            result = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("status") == COMPLETE:
            problems = verify_artefacts(run_dir, result, dirs=(PREDICTIONS_DIR,))
            if problems:
                out[run_dir.name] = [p.replace(f"{root}/", "", 1) for p in problems]
    return out


def refuse_damaged(results: str | Path, allow_damaged: bool = False) -> list[str]:
    """Raise :class:`DamagedResultsError` naming the damaged runs, unless ``allow_damaged``.

    With ``allow_damaged`` returns a warning naming them instead (empty when nothing is damaged), so
    that a board never mixes damaged runs in silently.
    """
    damaged = damaged_runs(results)
    if not damaged:
        return []
    shown = "; ".join(f"run {r}: {', '.join(ps)}" for r, ps in list(damaged.items())[:10])
    more = f" and {len(damaged) - 10} more" if len(damaged) > 10 else ""
    if not allow_damaged:
        raise DamagedResultsError(
            f"{results}: {len(damaged)} complete run(s) damaged (files differ from the checksums in their "
            f"result.json): {shown}{more}. Repair them with `bench3d2d status {results} --repair`, or "
            "report anyway with --allow-damaged"
        )
    return [f"{len(damaged)} damaged run(s) reported anyway (--allow-damaged): {shown}{more}"]


def duplicate_warnings(cases: pd.DataFrame) -> list[str]:
    """Warnings for case rows written more than once for the same entry, seed and case (averaged)."""
    key = [c for c in CASE_COLUMNS if c != "value"]
    if cases.empty:
        return []
    dup = cases[cases.duplicated(key, keep=False)]
    if dup.empty:
        return []
    by_runs = dup.groupby(key, dropna=False)["run_id"].agg(lambda s: tuple(sorted(set(s))))
    out = []
    for run_ids, n in by_runs.value_counts().items():
        runs = ", ".join(r or "(no run id)" for r in run_ids)
        out.append(
            f"{n} case row(s) appear more than once for the same entry, seed and case "
            f"(runs {runs}; e.g. tuned and untuned runs, or two profiles); their values are averaged"
        )
    return out


@dataclass(frozen=True)
class Prediction:
    """One stored prediction: probability, binary prediction, reference mask, optional background."""

    prob: np.ndarray
    pred: np.ndarray
    mask: np.ndarray
    background: np.ndarray | None = None


def read_prediction(path: Path) -> Prediction:
    """Load and check a prediction file; ValueError naming the file when it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:  # zip, pickle and format errors all mean "unusable file"
        raise ValueError(f"{path}: cannot be read as .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in PREDICTION_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: key(s) {', '.join(missing)} missing (found {', '.join(sorted(arrays))})")
    shape = arrays["mask"].shape
    for key in (*PREDICTION_KEYS, BACKGROUND_KEY):
        if key in arrays and (arrays[key].ndim != 2 or arrays[key].shape != shape):
            raise ValueError(f"{path}: '{key}' has shape {arrays[key].shape}; expected (H, W) = {shape}")
    background = arrays.get(BACKGROUND_KEY)
    return Prediction(
        prob=arrays["prob"].astype(np.float32),
        pred=arrays["pred"].astype(bool),
        mask=arrays["mask"].astype(bool),
        background=None if background is None else background.astype(np.float32),
    )
