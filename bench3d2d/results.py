"""The results format, in one place: folder layout, file names and the per-case table's columns.

The harness and engine write this format and the leaderboard reads it; both import the names
from here, so the two sides cannot drift apart. See ``docs/architecture.md`` (the results store).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Sub-folders of a results folder.
RUNS_DIR = "runs"
PRETRAIN_DIR = "pretrain"
SPLITS_DIR = "splits"
CACHE_DIR = "cache"
#: Environment variable that moves the prepared-data cache out of the results folder.
CACHE_ENV = "BENCH3D2D_CACHE_DIR"

#: Files and folders of one run folder (``runs/<run_id>/``); pre-trainings use the same names.
SPEC_FILE = "spec.json"
SPLIT_FILE = "split.json"
LOG_FILE = "log.txt"
CHECKPOINT_DIR = "checkpoints"
PREDICTION_DIR = "predictions"
CASES_FILE = "cases.csv"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
CLAIM_FILE = "claim.json"
PROGRESS_FILE = "progress.json"

#: Columns of ``cases.csv``, the long per-case table (one row per case and metric; also the
#: leaderboard's input). ``fraction`` is in percent; ``pretrain`` is ``none``, ``slo`` or ``faf``.
#: ``patient_id`` is the case's patient (the unit of the leaderboard's tests and intervals); empty when
#: the test set does not know its patients. Tables written before the column existed lack it: the
#: leaderboard reads them and falls back to the scan as unit, with a warning (see
#: :data:`OPTIONAL_CASE_COLUMNS`).
CASE_COLUMNS: tuple[str, ...] = (
    "train_dataset",
    "test_set",
    "fraction",
    "case_id",
    "patient_id",
    "model",
    "pretrain",
    "seed",
    "metric",
    "value",
)
#: Columns of :data:`CASE_COLUMNS` that a reader accepts missing (older results); filled with "".
OPTIONAL_CASE_COLUMNS: tuple[str, ...] = ("patient_id",)

#: Prediction files are ``predictions/<safe_name(test set)>/<safe_name(case id)>.npz`` (``bench3d2d._io.
#: safe_name``: a hash of the real id is appended to a name that had to change); each file records
#: its real case id and test set under these keys, and readers look files up by id.
CASE_ID_KEY = "case_id"
TEST_SET_KEY = "test_set"
#: Keys of a prediction file: probability (float), binary prediction and reference mask, all (H, W).
PREDICTION_KEYS = ("prob", "pred", "mask")
#: Optional background image of a prediction file (en-face projection or SLO), (H, W).
BACKGROUND_KEY = "enface"

#: ``result.json`` key of the artefact checksums: ``{path relative to the run folder: sha256}``.
ARTEFACTS_KEY = "artefacts"
#: Sub-folders of a run folder whose files ``result.json`` checksums (``cases.csv`` has ``cases_sha256``).
CHECKSUMMED_DIRS: tuple[str, ...] = (CHECKPOINT_DIR, PREDICTION_DIR)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_checksums(
    folder: str | os.PathLike, dirs: tuple[str, ...] | None = CHECKSUMMED_DIRS
) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under the sub-folders ``dirs`` of ``folder``.

    ``dirs=None``: every file of the folder but the bookkeeping ones (spec, result, log, claim,
    progress, error), for pre-trainings. Hidden and temporary files are left out.
    """
    folder = Path(folder)
    if dirs is None:
        bookkeeping = {SPEC_FILE, RESULT_FILE, LOG_FILE, CLAIM_FILE, PROGRESS_FILE, ERROR_FILE}
        paths = [p for p in folder.rglob("*") if p.parent != folder or p.name not in bookkeeping]
    else:
        paths = [p for d in dirs if (folder / d).is_dir() for p in (folder / d).rglob("*")]
    out = {}
    for path in sorted(paths):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            out[path.relative_to(folder).as_posix()] = sha256_file(path)
    return out


def verify_artefacts(
    folder: str | os.PathLike,
    result: dict,
    dirs: tuple[str, ...] | None = None,
    unchanged_before: float | None = None,
) -> list[str]:
    """What is damaged in a complete run (or pre-training) folder, as messages naming each file.

    Checks ``cases.csv`` against ``cases_sha256`` (when recorded) and every artefact recorded under
    :data:`ARTEFACTS_KEY` (only those under ``dirs``, when given) for presence and checksum. With
    ``unchanged_before`` (a time stamp, e.g. ``result.json``'s modification time) a file last modified
    before it is taken as unchanged without reading it: a quick check that still finds every file that
    was deleted, rewritten, truncated or edited since.
    """
    folder = Path(folder)
    expected = {CASES_FILE: result.get("cases_sha256")}
    expected.update(
        (rel, digest)
        for rel, digest in sorted(dict(result.get(ARTEFACTS_KEY) or {}).items())
        if dirs is None or rel.split("/", 1)[0] in dirs
    )
    problems = []
    for rel, digest in expected.items():
        if not isinstance(digest, str):
            continue
        path = folder / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif unchanged_before is not None and path.stat().st_mtime < unchanged_before:
            continue
        elif sha256_file(path) != digest:
            problems.append(f"{path}: does not match the checksum in result.json (changed or truncated)")
    return problems


#: How a board and the recipe records name the tuned table shipped with the library.
SHIPPED_TABLE = "shipped table"


def recipe_label(record: Mapping[str, Any] | None) -> str:
    """A recorded recipe (``result.json``'s ``recipe``, :meth:`Recipe.to_dict`) in words: ``tuned
    (shipped table)``, ``tuned (my_recipes.json)``, ``official (no tuned entry)``, ``common``."""
    if not record:
        return "not recorded"
    asked, source = str(record.get("set") or ""), str(record.get("source") or "")
    if source == "tuned":
        return f"tuned ({record.get('table') or SHIPPED_TABLE})"
    if asked and asked != source:
        return f"{source} (no {asked} entry)"
    return source or "not recorded"
