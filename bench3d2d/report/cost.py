"""Cost beside accuracy: parameters, training time and peak memory per run, from each run's ``result.json``.

What a complete run's ``result.json`` holds (written by the harness: ``harness/_store.py`` with the run
information of ``harness/_worker.py``): ``timings`` (``data_s``, ``pretrain_s``, ``fit_s``,
``evaluate_s``, ``total_s``, ``cpu_s``) and ``profile`` (with ``depth``). Read here:

* training time: ``timings.fit_s`` (fine-tuning; SSL pre-training is cached and shared, so it is
  listed apart as ``pretrain_s`` when the run did it);
* parameters: ``parameters`` when the result records it, else counted by building the model from
  the registry at the profile's depth (NaN when the model is not installed here);
* peak memory: ``peak_memory_mb`` (or ``memory.peak_mb``) when the result records it; runs written by
  this version of the harness do not, so the column reads "not recorded".
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pandas as pd

from bench3d2d.report.collect import ResultsCollection

COST_COLUMNS = [
    "train_dataset",
    "fraction",
    "model",
    "pretrain",
    "runs",
    "parameters",
    "fit_s",
    "pretrain_s",
    "total_s",
    "peak_memory_mb",
]


def _number(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


@cache
def _count_parameters(model: str, depth: int) -> float:
    """Trainable parameters of a registered model at a depth; NaN when it cannot be built here."""
    try:
        from bench3d2d.models import count_parameters, create_model

        return float(count_parameters(create_model(model, depth=depth)))
    except Exception:  # a plugin model that is not installed, or a depth it refuses
        return math.nan


def _section(result: dict[str, Any], key: str) -> dict[str, Any]:
    value = result.get(key)
    return value if isinstance(value, dict) else {}


def _run_cost(result: dict[str, Any], model: str) -> dict[str, float]:
    timings, memory = _section(result, "timings"), _section(result, "memory")
    params = _number(result.get("parameters"))
    if math.isnan(params):
        depth = _section(result, "profile").get("depth")
        if isinstance(depth, int) and depth > 0:
            params = _count_parameters(model, depth)
    peak = _number(result.get("peak_memory_mb"))
    return {
        "parameters": params,
        "fit_s": _number(timings.get("fit_s")),
        "pretrain_s": _number(timings.get("pretrain_s")),
        "total_s": _number(timings.get("total_s")),
        "peak_memory_mb": peak if math.isfinite(peak) else _number(memory.get("peak_mb")),
    }


def cost_table(coll: ResultsCollection) -> pd.DataFrame:
    """One row per (train dataset, fraction, model, pre-training): the number of complete runs and the
    mean over them (seeds) of parameters, fine-tuning time, pre-training time, total time and peak
    memory (NaN where no run recorded it). A published board read as a source brings its own rows
    (its ``cost.csv``; its runs carry no result files)."""
    rows = []
    for run in coll.runs_with("complete"):
        model = run.field("model")
        if model is None or not run.result:  # a published board's run: its cost comes from its cost.csv
            continue
        rows.append(
            {
                "train_dataset": run.field("train_dataset", "dataset"),
                "fraction": _number(run.field("fraction")),
                "model": str(model),
                "pretrain": str(run.field("pretrain", "pretraining") or "none"),
                **_run_cost(run.result, str(model)),
            }
        )
    board = coll.board_cost.reindex(columns=COST_COLUMNS) if not coll.board_cost.empty else None
    if not rows:
        return board if board is not None else pd.DataFrame(columns=COST_COLUMNS)
    df = pd.DataFrame(rows)
    keys = ["train_dataset", "fraction", "model", "pretrain"]
    out = df.groupby(keys, sort=True).agg(
        runs=("fit_s", "size"),
        parameters=("parameters", "mean"),
        fit_s=("fit_s", "mean"),
        pretrain_s=("pretrain_s", "mean"),
        total_s=("total_s", "mean"),
        peak_memory_mb=("peak_memory_mb", "mean"),
    )
    out = out.reset_index().reindex(columns=COST_COLUMNS)
    return out if board is None else pd.concat([out, board], ignore_index=True)
