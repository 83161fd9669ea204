"""Fabricated results folders in the documented results-store format, for the report tests.

Not a test module (no ``test_`` prefix): imported by ``tests/test_report*.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench3d2d.results import CASE_COLUMNS as _COLUMNS

CASE_COLUMNS = list(_COLUMNS)


def run_id_of(spec: dict) -> str:
    """12 hex digits, as the harness does (content hash)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def safe_name(name: str) -> str:
    """File-name form of a name, as the harness writes prediction folders and files."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def write_run(
    root: Path,
    spec: dict,
    rows: pd.DataFrame | None = None,
    *,
    status: str = "complete",
    error: dict | None = None,
    predictions: dict | None = None,
) -> Path:
    """One run folder as the harness writes it: spec.json, and cases.csv + result.json (complete),
    error.json (failed), log.txt only ("running": started, no result) or nothing more ("pending")."""
    run = root / "runs" / run_id_of(spec)
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(json.dumps(spec))
    if rows is not None:
        rows.to_csv(run / "cases.csv", index=False)
    for (test_set, case_id), arrays in (predictions or {}).items():
        folder = run / "predictions" / safe_name(test_set)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / f"{safe_name(case_id)}.npz", **arrays)
    if status != "pending":
        (run / "log.txt").write_text("started\n")
    if status == "complete":
        data = (run / "cases.csv").read_bytes()
        (run / "result.json").write_text(
            json.dumps(
                {
                    "status": "complete",
                    "run_id": run.name,
                    "spec": spec,
                    "cases_file": "cases.csv",
                    "cases_rows": len(rows),
                    "cases_sha256": hashlib.sha256(data).hexdigest(),
                    "summary": [],
                }
            )
        )
    elif status == "failed":
        (run / "error.json").write_text(
            json.dumps(error or {"type": "RuntimeError", "message": "boom", "traceback": "..."})
        )
    return run


def _prediction(rng: np.random.Generator, quality: float, shape=(24, 32)) -> dict:
    """A blob mask, a prediction that overlaps it by ``quality``, a probability map and a background."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    r = rng.uniform(0.18, 0.3) * min(h, w)
    mask = ((yy - cy) ** 2 + ((xx - cx) * h / w) ** 2) < r**2
    shift = (1 - quality) * r * 1.5
    prob = np.exp(-(((yy - cy - shift) ** 2 + ((xx - cx + shift) * h / w) ** 2) / (2 * (r * 0.9) ** 2)))
    pred = prob > 0.5
    background = 0.4 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) - 0.25 * mask + rng.normal(0, 0.03, shape)
    return {
        "prob": prob.astype(np.float16),
        "pred": pred.astype(np.uint8),
        "mask": mask.astype(np.uint8),
        "enface": background.astype(np.float32),
    }


def fabricate(
    root: Path,
    *,
    entries: Sequence[tuple[str, str]] = (
        ("fpbnet", "none"),
        ("fpbnet", "slo"),
        ("fpbnet", "faf"),
        ("ipn", "none"),
    ),
    effects: dict[tuple[str, str], float] | None = None,
    train_dataset: str = "synth-ga",
    test_sets: Iterable[str] = ("synth-ga:test",),
    fractions: Iterable[float] = (20, 100),
    n_cases: int = 12,
    seeds: Iterable[int] = (0, 1),
    noise: float = 0.02,
    predictions: int = 3,
    seed: int = 0,
    scans_per_patient: int = 1,
) -> Path:
    """A results folder with one complete run per (entry, fraction, seed).

    Dice per case = case difficulty + the entry's effect + fraction gain + noise; the absolute area
    difference falls as Dice rises; HD95 is NaN for one case. ``predictions`` cases get .npz maps.
    Cases ``i`` belong to patient ``p{i // scans_per_patient}``.
    """
    rng = np.random.default_rng(seed)
    effects = effects or {e: 0.03 * i for i, e in enumerate(reversed(entries))}
    test_sets = list(test_sets)
    fractions = list(fractions)
    difficulty = {t: rng.uniform(0.55, 0.8, n_cases) for t in test_sets}
    for model, pretrain in entries:
        for fraction in fractions:
            for s in seeds:
                spec = {
                    "model": model,
                    "train_dataset": train_dataset,
                    "test_sets": test_sets,
                    "fraction": float(fraction),
                    "seed": int(s),
                    "profile": "smoke",
                    "pretrain": pretrain,
                }
                rows, preds = [], {}
                for t in test_sets:
                    for i in range(n_cases):
                        case = f"case{i:02d}"
                        gain = 0.05 * np.log10(float(fraction) / 5.0)
                        dice = float(
                            np.clip(
                                difficulty[t][i] + effects[(model, pretrain)] + gain + rng.normal(0, noise),
                                0,
                                1,
                            )
                        )
                        area = float(abs(rng.normal(0, 0.05)) + (1 - dice) * 2.0)
                        hd95 = (1 - dice) * 3 + rng.uniform(0, 0.1) if i < n_cases - 1 else float("nan")
                        for metric, value in (
                            ("dice", dice),
                            ("area_diff_mm2", area),
                            ("hd95_mm", hd95),
                            ("area_diff_signed_mm2", -area),
                        ):
                            rows.append(
                                [
                                    train_dataset,
                                    t,
                                    fraction,
                                    case,
                                    f"p{i // scans_per_patient:02d}",
                                    model,
                                    pretrain,
                                    s,
                                    metric,
                                    value,
                                ]
                            )
                        if i < predictions:
                            preds[(t, case)] = _prediction(np.random.default_rng(i), dice)
                write_run(root, spec, pd.DataFrame(rows, columns=CASE_COLUMNS), predictions=preds)
    return root
