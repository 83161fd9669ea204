"""Training engine: ``fit``, ``predict``/``evaluate`` with top-k ensembling, and ``train_and_evaluate``.

Public modules: ``config`` (the run configuration dataclasses: :class:`RunTarget`,
:class:`RunSettings`, :class:`RunPaths`, :class:`Compute`, :class:`FitOptions`,
:class:`PretrainTarget`), ``profiles`` (training profiles), ``tasks`` and ``losses`` (what is learned),
``ssl`` (inter-modal pre-training), ``checkpoints`` (weights on disk), ``acceleration`` (CPU
convolution speed-ups). Private machinery, one job each:

* ``_sources`` — the :class:`CaseSource` protocol, :class:`ArrayCases`, batches with the
  protocol's augmentation, evaluation inputs;
* ``_precision`` — autocast dtype per device (bf16 / float16 + grad scaler / float32), the
  :class:`~bench3d2d.engine._precision.Precision` record, batched evaluation-mode forward passes;
* ``_fit`` — :func:`fit` (top-k checkpoints, resumable ``last.pt``), :func:`build_model`;
* ``_evaluate`` — :func:`load_ensemble`, :func:`predict`, :func:`evaluate`;
* ``_run`` — :func:`train_and_evaluate`, the harness's one call per run.

See ``docs/training.md``.
"""

from bench3d2d.engine._evaluate import (
    THRESHOLD,
    evaluate,
    evaluate_case,
    load_ensemble,
    predict,
    predict_proba,
)
from bench3d2d.engine._fit import (
    Checkpoint,
    FitResult,
    NonFiniteLossError,
    ResumeMismatchError,
    build_model,
    fit,
    model_from_checkpoint,
    training_crop,
    update_topk,
    validate,
)
from bench3d2d.engine._run import CASE_COLUMNS, RunResult, long_table, train_and_evaluate
from bench3d2d.engine._sources import ArrayCases, CaseSource, augment, make_batch, round_schedule
from bench3d2d.engine.checkpoints import ArchitectureMismatchError, CheckpointError
from bench3d2d.engine.config import Compute, FitOptions, PretrainTarget, RunPaths, RunSettings, RunTarget

__all__ = [
    "CASE_COLUMNS",
    "THRESHOLD",
    "ArchitectureMismatchError",
    "ArrayCases",
    "CaseSource",
    "Checkpoint",
    "CheckpointError",
    "Compute",
    "FitOptions",
    "FitResult",
    "NonFiniteLossError",
    "PretrainTarget",
    "ResumeMismatchError",
    "RunPaths",
    "RunResult",
    "RunSettings",
    "RunTarget",
    "augment",
    "build_model",
    "evaluate",
    "evaluate_case",
    "fit",
    "load_ensemble",
    "long_table",
    "make_batch",
    "model_from_checkpoint",
    "predict",
    "predict_proba",
    "round_schedule",
    "train_and_evaluate",
    "training_crop",
    "update_topk",
    "validate",
]
