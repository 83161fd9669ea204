"""The results format, in one place: folder layout, file names and the per-case table's columns.

The harness and engine write this format and the leaderboard reads it; both import the names
from here, so the two sides cannot drift apart. See ``docs/architecture.md`` (the results store).
"""

from __future__ import annotations

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

#: Keys of a prediction file: probability (float), binary prediction and reference mask, all (H, W).
PREDICTION_KEYS = ("prob", "pred", "mask")
#: Optional background image of a prediction file (en-face projection or SLO), (H, W).
BACKGROUND_KEY = "enface"
