"""One board from several sittings: the union of several results folders, per-case tables and
published boards, refusing duplicates that disagree.

A *source* is a results folder (``runs/``), one per-case table (``.csv`` / ``.parquet``), or a
published board folder (its ``cases.csv``, and its ``runs.csv`` and ``cost.csv`` where present).
Sources are read one by one (:func:`bench3d2d.report.collect.collect`) and their case rows joined.
A case row is identified by (train dataset, test set, fraction, model, pre-training, seed, case,
metric). Where two sources hold the same row:

* with the same value on the stored precision (:data:`statistics.TIE_DECIMALS` decimals; NaN equals
  NaN), it is counted once (from the first source named) and a warning says so;
* with different values, :func:`collect_sources` raises a ``ValueError`` naming both sources, the row
  and both values: seeds or datasets run on different machines or days join, but a disagreement is
  never averaged away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.report.collect import COMPLETE, ResultsCollection, RunRecord, collect, read_cases_file
from bench3d2d.results import CASE_COLUMNS, RUNS_DIR

#: Columns that identify one case row across sources (the value and the patient are what it holds).
ROW_KEY: tuple[str, ...] = tuple(c for c in CASE_COLUMNS if c not in ("value", "patient_id"))
BOARD_CASES, BOARD_RUNS, BOARD_COST = "cases.csv", "runs.csv", "cost.csv"


def is_board(path: Path) -> bool:
    """A published board folder: a ``cases.csv`` and no ``runs/`` folder."""
    return path.is_dir() and (path / BOARD_CASES).is_file() and not (path / RUNS_DIR).is_dir()


def _board_runs(path: Path) -> list[RunRecord]:
    """The runs a board lists in its ``runs.csv`` (spec fields only: no result files travel)."""
    if not (path / BOARD_RUNS).is_file():
        return []
    try:
        table = pd.read_csv(path / BOARD_RUNS, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path / BOARD_RUNS}: cannot be read as CSV ({exc})") from None
    fields = ("model", "pretrain", "train_dataset", "fraction", "seed", "profile")
    out = []
    for r in table.to_dict(orient="records"):
        spec = {k: r[k] for k in fields if r.get(k, "") != ""}
        for k, kind in (("fraction", float), ("seed", int)):
            if k in spec:
                spec[k] = kind(float(spec[k]))
        out.append(
            RunRecord(
                run_id=str(r.get("run_id", "")), path=path, status=r.get("status") or COMPLETE, spec=spec
            )
        )
    return out


#: The fields that name one run in a per-case table: its run id follows from them.
_RUN_KEY = ("train_dataset", "fraction", "model", "pretrain", "seed")


def _run_ids(path: Path, table: pd.DataFrame) -> pd.Series:
    """The run id of every row of a board's per-case table, from the ``run_id`` column its
    ``cases.csv`` carries ("" where it has none)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=[*_RUN_KEY, "run_id"])
    except ValueError:  # no run_id column
        return pd.Series("", index=table.index)
    raw = raw.drop_duplicates(list(_RUN_KEY))
    raw["fraction"], raw["seed"] = raw["fraction"].astype(float), raw["seed"].astype(float).astype("int64")
    merged = table.loc[:, list(_RUN_KEY)].merge(raw, on=list(_RUN_KEY), how="left")
    return pd.Series(merged["run_id"].fillna("").to_numpy(), index=table.index)


def read_board(path: Path) -> ResultsCollection:
    """A published board folder as a :class:`ResultsCollection`: its per-case rows (with their run
    ids), its runs and (in ``board_cost``) its cost table."""
    table, problems = read_cases_file(path / BOARD_CASES, str(path / BOARD_CASES))
    table["run_id"] = _run_ids(path / BOARD_CASES, table)
    runs = _board_runs(path)
    counts = table["run_id"].value_counts()
    for run in runs:
        run.n_rows = int(counts.get(run.run_id, 0))
    coll = ResultsCollection(source=path, cases=table, runs=runs, warnings=problems)
    if (path / BOARD_COST).is_file():
        coll.board_cost = pd.read_csv(path / BOARD_COST)
    return coll


def _read(source: str | Path) -> ResultsCollection:
    path = Path(source)
    return read_board(path) if is_board(path) else collect(path)


def _comparable(values: pd.Series) -> np.ndarray:
    """Values on the stored precision, NaN as +inf (so that NaN equals NaN)."""
    v = stats.on_stored_precision(values.to_numpy(dtype=float))
    return np.where(np.isnan(v), math.inf, v)


def _conflict_message(rows: pd.DataFrame) -> str:
    """``A and B disagree on <row>: value x in A, y in B`` for the first disagreeing row."""
    first = rows.iloc[0]
    same = rows[(rows[list(ROW_KEY)] == first[list(ROW_KEY)]).all(axis=1)]
    a, b = same.iloc[0], same[same["_v"] != first["_v"]].iloc[0]
    what = ", ".join(f"{k} {first[k]}" for k in ROW_KEY)
    return (
        f"{a['_source']} and {b['_source']} disagree on a case row ({what}): value {a['value']} in "
        f"{a['_source']}, {b['value']} in {b['_source']}"
    )


def merge_cases(tables: Sequence[tuple[str, pd.DataFrame]]) -> tuple[pd.DataFrame, list[str]]:
    """The union of several sources' case rows; raises ValueError on a row two sources disagree on.

    Rows held by several sources with the same value are kept once (from the first source); the
    warnings say how many. Rows repeated within one source are left as they are (averaged later,
    with the warning :func:`collect.duplicate_warnings` gives).
    """
    tagged = pd.concat(
        [t.assign(_source=name, _order=i) for i, (name, t) in enumerate(tables)], ignore_index=True
    )
    if tagged.empty:
        return tagged.drop(columns=["_source", "_order"]), []
    tagged["_v"] = _comparable(tagged["value"])
    per_source = tagged.drop_duplicates([*ROW_KEY, "_source", "_v"])
    shared = per_source[per_source.duplicated(list(ROW_KEY), keep=False)]
    shared = shared[shared.groupby(list(ROW_KEY), dropna=False)["_source"].transform("nunique") > 1]
    if not shared.empty:
        differ = shared.groupby(list(ROW_KEY), dropna=False)["_v"].transform("nunique") > 1
        if differ.any():
            n = int(shared[differ].drop_duplicates(list(ROW_KEY)).shape[0])
            more = f" ({n - 1} more row(s) disagree)" if n > 1 else ""
            raise ValueError(_conflict_message(shared[differ]) + more)
    first = tagged.groupby(list(ROW_KEY), dropna=False)["_order"].transform("min")
    repeated = tagged["_order"] != first
    warnings = []
    if repeated.any():
        names = ", ".join(sorted(set(tagged.loc[repeated, "_source"])))
        warnings.append(
            f"{int(repeated.sum())} case row(s) of {names} are also in an earlier source with the same "
            "values; counted once"
        )
    return tagged.loc[~repeated].drop(columns=["_source", "_order", "_v"]).reset_index(drop=True), warnings


def collect_sources(sources: Sequence[str | Path]) -> ResultsCollection:
    """Read one or several sources (results folders, per-case tables, board folders) into one
    :class:`ResultsCollection`; ValueError naming both sources when two disagree on a case row."""
    if not sources:
        raise ValueError("no results given")
    colls = [_read(s) for s in sources]
    if len(colls) == 1:
        return colls[0]
    cases, notes = merge_cases([(str(c.source), c.cases) for c in colls])
    merged = ResultsCollection(
        source=Path(colls[0].source),
        cases=cases,
        runs=[r for c in colls for r in c.runs],
        warnings=[w for c in colls for w in c.warnings] + notes,
    )
    costs = [c.board_cost for c in colls if not c.board_cost.empty]
    if costs:
        merged.board_cost = pd.concat(costs, ignore_index=True)
    return merged
