"""CSV, Parquet and JSON output: the long per-case table and every leaderboard table."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench3d2d._io import atomic_write_text

if TYPE_CHECKING:
    from bench3d2d.report.model import Report

_CASE_ORDER = ["train_dataset", "test_set", "fraction", "model", "pretrain", "case_id", "seed", "metric"]
#: Key columns of the board's ``cases.csv`` (one row per case, entry and seed; one column per metric).
WIDE_KEYS = [
    "train_dataset",
    "test_set",
    "fraction",
    "model",
    "pretrain",
    "seed",
    "case_id",
    "patient_id",
    "run_id",
]


def sorted_cases(report: Report) -> pd.DataFrame:
    """The long per-case table of every complete run, in a stable order."""
    cases = report.collection.cases
    return cases.sort_values([*_CASE_ORDER, "run_id"], kind="stable").reset_index(drop=True)


def wide_cases(report: Report) -> pd.DataFrame:
    """The board's per-case table: one row per (case, entry, seed, run), one column per metric, in a
    stable order. The same numbers as the long table in a quarter of the bytes; ``bench3d2d report``
    reads it back (``collect`` accepts the long and this wide form)."""
    long = sorted_cases(report)
    if long.empty:
        return pd.DataFrame(columns=WIDE_KEYS)
    long = long.assign(patient_id=long["patient_id"].fillna(""), run_id=long["run_id"].fillna(""))
    # groupby, not pivot_table(dropna=False), which would build the product of every key's values
    wide = long.groupby([*WIDE_KEYS, "metric"], sort=True)["value"].mean().unstack("metric")
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def _csv(df: pd.DataFrame, float_format: str | None = None) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format=float_format)
    return buf.getvalue()


def write_csv(report: Report, out: Path) -> list[Path]:
    """``cases.csv`` (the per-case data, once: every case, its patient, seed and run, one column per
    metric; :func:`wide_cases`), ``summary.csv``,
    ``pairwise.csv``, ``friedman.csv`` (one row per family: Friedman, n, reachability, ranking
    stability), ``ranks.csv`` (bootstrap rank distribution), ``fits.csv`` (one row per entry, seed and
    test set: cases, empty predictions, references with a lesion and ``failed_fit``, see
    :func:`bench3d2d.report.tables.failed_fits`), ``claims.csv``, ``cost.csv`` and ``runs.csv``.

    A ``cases.parquet`` or ``case_means.csv`` left by an older version in ``out`` is removed: the
    per-case data lives in one file, in one format.
    """
    lb = report.leaderboard
    for old in ("cases.parquet", "case_means.csv"):
        (out / old).unlink(missing_ok=True)
    files = [atomic_write_text(out / "cases.csv", _csv(wide_cases(report)))]
    for name, df in (
        ("summary", lb.summary),
        ("pairwise", lb.pairwise),
        ("friedman", lb.friedman),
        ("ranks", lb.ranks),
        ("fits", lb.fits),
        ("claims", report.claims),
        ("cost", report.cost),
        ("runs", report.collection.runs_table()),
    ):
        # derived tables: 8 significant digits are more than any number on the board shows
        files.append(atomic_write_text(out / f"{name}.csv", _csv(df, "%.8g")))
    return files


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities to null, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(df: pd.DataFrame) -> list[dict]:
    return [_plain(r) for r in df.to_dict(orient="records")]


def write_json(report: Report, out: Path) -> list[Path]:
    """``report.json``: settings, warnings, runs, the claims check, cost, the family table (Friedman,
    n, reachability, ranking stability), the failed fits (one record per entry, seed and test set that
    predicted no lesion anywhere) and the figures (NaN written as null). The large tables (per case,
    summary, pairs, rank distributions, every seed's fit) are in their CSV files, named under ``tables``."""
    lb = report.leaderboard
    doc = {
        "title": report.title,
        "note": report.options.note,
        "source": report.source,
        "built_by": report.built_by,
        "settings": _plain(lb.settings),
        "warnings": report.warnings,
        "tables": {
            name: f"{name}.csv"
            for name in (
                "cases",
                "summary",
                "pairwise",
                "friedman",
                "ranks",
                "fits",
                "claims",
                "cost",
                "runs",
            )
        },
        "runs": _records(report.collection.runs_table()),
        "claims": _records(report.claims),
        "cost": _records(report.cost),
        "failed_fits": _records(lb.fits[lb.fits["failed_fit"]]) if not lb.fits.empty else [],
        "figures": {
            "fractions": report.curves,
            "sections": [
                {
                    "train_dataset": s.train_dataset,
                    "test_set": s.test_set,
                    "fraction": s.fraction,
                    **s.figures,
                }
                for s in report.sections
            ],
            "cost": report.cost_figures,
        },
    }
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return [atomic_write_text(out / "report.json", text + "\n")]
