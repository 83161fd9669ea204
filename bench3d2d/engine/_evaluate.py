"""Top-k ensemble prediction and per-case evaluation (``docs/protocol.md`` §10).

For each case: the volume on the §4 grid, one forward per kept checkpoint, the average of the
**probabilities**, resized linearly (half-pixel) back to the original (H, W), then ``> 0.5``.
Metrics are computed on the original grid with the original spacing, against every rater.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench3d2d.data.evalgrid import resize_map
from bench3d2d.engine._fit import model_from_checkpoint, resolve_device
from bench3d2d.engine._precision import ensemble_probs
from bench3d2d.engine._sources import CaseSource
from bench3d2d.engine.tasks import dice_score
from bench3d2d.evaluation.metrics import METRICS, case_metrics

log = logging.getLogger("bench3d2d.engine")

THRESHOLD = 0.5


def load_ensemble(
    paths: Iterable[Path], device: str | torch.device | None = None, accelerated: bool | None = None
) -> list[nn.Module]:
    """The models of the given checkpoint files, weights loaded, in evaluation mode.

    ``accelerated``: apply ``accelerate`` (``None``: on CPU only).
    """
    dev = resolve_device(device)
    models = [model_from_checkpoint(Path(p), dev, accelerated) for p in paths]
    if not models:
        raise ValueError("no checkpoints to predict with")
    return models


def predict_proba(models: Sequence[nn.Module], volume: np.ndarray, amp: bool = True) -> np.ndarray:
    """Ensemble probability map (H, W) of one prepared volume (H, W, D), on its original grid."""
    from bench3d2d.engine._sources import ArrayCases

    volume = np.asarray(volume)
    ((_, prob),) = ensemble_probs(models, ArrayCases({"case": volume}), amp=amp)
    return resize_map(prob, volume.shape[:2])


def predict(
    models: Sequence[nn.Module],
    source: CaseSource,
    case_ids: Iterable[str] | None = None,
    amp: bool = True,
    batch: int = 1,
    channels_last: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{case_id: (probability float32 (H, W), prediction uint8 (H, W))}`` on each original grid.

    The probability is the mean of the models' sigmoid maps on the §4 grid, resized linearly
    (half-pixel) to the case's (H, W); the prediction is ``probability > 0.5`` (strict).
    """
    out = {}
    for cid, prob_grid in ensemble_probs(models, source, case_ids, batch, amp, channels_last):
        prob = resize_map(prob_grid, source.volume(cid).shape[:2])
        out[cid] = (prob, (prob > THRESHOLD).astype(np.uint8))
    return out


def rater_keys(source: CaseSource, case_id: str, key: str = "mask") -> list[str]:
    """The reference masks of a case: ``mask`` and any ``mask:<rater>`` keys the source lists."""
    lister = getattr(source, "targets", None)
    if callable(lister):
        keys = [k for k in lister(case_id) if k == key or k.startswith(f"{key}:")]
        if keys:
            return sorted(keys, key=lambda k: (k != key, k))
    return [key] if source.target(case_id, key) is not None else []


def evaluate_case(
    prob: np.ndarray, refs: dict[str, np.ndarray], spacing: Sequence[float], key: str = "mask"
) -> dict[str, float]:
    """Metrics of one case against one or more raters.

    With one reference, the metric names of :data:`METRICS`. With several, ``<metric>:<rater>``
    per rater (``mask`` is ``rater1``), the headline ``<metric>`` = mean over raters (NaN-aware),
    and ``interrater_dice`` between the first two.
    """
    pred = prob > THRESHOLD
    per_rater = {k: case_metrics(pred, ref > 0.5, tuple(spacing)) for k, ref in refs.items()}
    if len(per_rater) == 1:
        return next(iter(per_rater.values()))
    out: dict[str, float] = {}
    names = {k: ("rater1" if k == key else k.split(":", 1)[1]) for k in per_rater}
    for metric in METRICS:
        values = [per_rater[k][metric] for k in per_rater]
        finite = [v for v in values if not np.isnan(v)]
        out[metric] = float(np.mean(finite)) if finite else float("nan")
        for k in per_rater:
            out[f"{metric}:{names[k]}"] = per_rater[k][metric]
    first, second = list(refs)[:2]
    out["interrater_dice"] = dice_score(refs[first] > 0.5, refs[second] > 0.5)
    return out


def evaluate(
    models: Sequence[nn.Module],
    source: CaseSource,
    key: str = "mask",
    amp: bool = True,
    keep_maps: int = 0,
    batch: int = 1,
    channels_last: bool = False,
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Per-case metrics (wide: one row per case) and up to ``keep_maps`` prediction maps.

    Cases without any reference mask are an error (they cannot be scored).
    """
    keys_of = {}
    for cid in source.case_ids:
        keys_of[cid] = rater_keys(source, cid, key)
        if not keys_of[cid]:
            raise ValueError(f"test case {cid!r} has no {key!r} reference mask")
    rows, maps = [], {}
    for i, (cid, prob_grid) in enumerate(ensemble_probs(models, source, None, batch, amp, channels_last)):
        keys = keys_of[cid]
        refs = {k: np.asarray(source.target(cid, k)) for k in keys}
        vol = source.volume(cid)
        prob = resize_map(prob_grid, vol.shape[:2])
        metrics = evaluate_case(prob, refs, source.spacing(cid), key)
        rows.append({"case_id": cid, **metrics})
        if i < keep_maps:
            maps[cid] = {
                "prob": prob.astype(np.float16),
                "pred": (prob > THRESHOLD).astype(np.uint8),
                "mask": (refs[keys[0]] > 0.5).astype(np.uint8),
                "enface": np.asarray(vol).mean(axis=2).astype(np.float16),
                "bscan": np.asarray(vol[vol.shape[0] // 2]).astype(np.float16),
            }
    return pd.DataFrame(rows), maps
