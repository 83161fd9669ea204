"""A tiny in-memory segmentation problem for the engine tests, and a fit job for the kill test.

``python tests/_engine_toy.py OUT_DIR`` runs :func:`toy_fit` into OUT_DIR and prints one JSON line
with the validation history and the ensemble's test Dice (used by the SIGKILL resume test).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench3d2d.engine import ArrayCases, Compute, FitOptions, build_model, evaluate, fit, load_ensemble
from bench3d2d.engine.profiles import SMOKE
from bench3d2d.engine.tasks import segmentation

SHAPE = (16, 16, 64)

#: A few-second profile: 2 steps per round, batch 2, crops 4 x 16.
TOY_PROFILE = SMOKE.with_overrides(
    {"rounds": 3, "steps_per_round": 2, "batch_size": 2, "crop": [4, 16], "top_k": 2, "eval_batch": 4}
)


def toy_cases(
    n: int, seed: int, prefix: str = "c", shape: tuple[int, int, int] = SHAPE, with_maps: bool = False
) -> ArrayCases:
    """``n`` volumes with a bright band in depth under a random rectangle (the mask)."""
    rng = np.random.default_rng(seed)
    vols, masks, slo = {}, {}, {}
    H, W, D = shape
    for i in range(n):
        m = np.zeros((H, W), np.float32)
        h0, w0 = rng.integers(0, H // 2), rng.integers(0, W // 2)
        m[h0 : h0 + H // 3, w0 : w0 + W // 3] = 1
        v = rng.standard_normal(shape).astype(np.float32)
        v[..., D // 3 : D // 2] += 2.0 * m[..., None]
        cid = f"{prefix}{i}"
        vols[cid], masks[cid] = v, m
        slo[cid] = np.clip(0.3 + 0.5 * m + 0.05 * rng.standard_normal((H, W)), 0, 1).astype(np.float32)
    maps = {"mask": masks, **({"slo": slo, "faf": slo} if with_maps else {})}
    return ArrayCases(vols, maps, {c: (0.1, 0.02, 0.01) for c in vols}, {c: c for c in vols})


def toy_fit(
    out_dir: Path, profile=TOY_PROFILE, seed: int = 0, compute: Compute | None = None, on_validation=None
):
    """Fit fpbnet on the toy problem and return (FitResult, per-case test table)."""
    torch.set_num_threads(1)
    train, val, test = toy_cases(4, 1, "t"), toy_cases(2, 2, "v"), toy_cases(2, 3, "x")
    torch.manual_seed(seed)
    model = build_model("fpbnet", SHAPE[2])
    options = FitOptions(profile, seed, compute=compute or Compute())
    result = fit(model, segmentation(), train, val, options, out_dir=out_dir, on_validation=on_validation)
    cases, _ = evaluate(load_ensemble([c.path for c in result.checkpoints]), test, batch=4)
    return result, cases


class Killed(Exception):
    """Stands in for a kill right after a validation (its ``last.pt`` and top-k files are written)."""


def stop_after(n_validations: int):
    """An ``on_validation`` callback that raises :class:`Killed` at the ``n_validations``-th validation."""
    seen = [0]

    def on_validation(step: int, score: float) -> None:
        seen[0] += 1
        if seen[0] == n_validations:
            raise Killed(step)

    return on_validation


if __name__ == "__main__":
    res, table = toy_fit(Path(sys.argv[1]))
    print(
        json.dumps(
            {
                "history": res.history,
                "dice": table["dice"].tolist(),
                "hd95": table["hd95_mm"].tolist(),
                "steps": res.steps,
                "resumed_from": res.resumed_from_step,
            }
        )
    )
