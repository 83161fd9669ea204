"""Per-case segmentation metrics on the original en-face grid (``docs/protocol.md`` §10.3).

Conventions for empty masks (A = prediction, M = reference):

* Both empty: Dice, precision and recall are 1; HD95 is NaN (no border: truly undefined). NaNs are
  kept in the per-case table and counted by the aggregation (:func:`summarise`), never dropped.
* Exactly one empty (a *failure*: nothing predicted where there is a lesion, or a lesion predicted
  where there is none): every ranked metric gets its worst value, so that a failure is never rewarded
  by a missing number or by a small one: Dice, precision and recall 0, HD95 the image diagonal in mm
  (:func:`image_diagonal`), the largest distance two pixels of the image can have, and the absolute
  area difference the image area in mm² (:func:`image_area`), at least as large as any prediction's
  area difference on that image (an empty prediction would otherwise score just the reference's
  area, which beats a working model that over-segments a small lesion). The signed difference and
  the raw areas stay the real ones (they are descriptive, never ranked).

HD95 follows MedPy's ``hd95`` (``medpy.metric.binary.hd95``) with its default ``connectivity=1``: the
border of a mask is the mask minus its erosion by the 4-neighbourhood cross (a pixel is border when
one of its 4 edge neighbours is background or outside the image); distances are Euclidean between
pixel centres in mm; the 95th percentile (linear interpolation) of both directed distance sets
pooled.

Areas are in mm², from the en-face spacing (h, w): the B-scan spacing times the A-scan spacing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage

#: Metric names written by :func:`case_metrics`, in table order.
METRICS = (
    "dice",
    "area_diff_mm2",
    "area_diff_signed_mm2",
    "area_pred_mm2",
    "area_ref_mm2",
    "precision",
    "recall",
    "hd95_mm",
)


def _as_bool(mask: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D en-face mask (H, W); got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """2|A∩M| / (|A| + |M|); 1.0 when both masks are empty."""
    a, m = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    total = int(a.sum()) + int(m.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, m).sum()) / total


#: Connectivity of the border structure (MedPy's default: 1, the 4-neighbourhood cross in 2-D).
BORDER_CONNECTIVITY = 1


def image_diagonal(shape: tuple[int, ...], spacing: tuple[float, float]) -> float:
    """Diagonal of an (H, W) image in mm: the HD95 of a failed case."""
    return math.hypot(shape[0] * float(spacing[0]), shape[1] * float(spacing[1]))


def image_area(shape: tuple[int, ...], spacing: tuple[float, float]) -> float:
    """Area of an (H, W) image in mm²: the absolute area difference of a failed case."""
    return shape[0] * shape[1] * float(spacing[0]) * float(spacing[1])


def _border(mask: np.ndarray) -> np.ndarray:
    """Mask minus its erosion (MedPy's default connectivity 1); pixels on the image edge are border."""
    structure = ndimage.generate_binary_structure(mask.ndim, BORDER_CONNECTIVITY)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)


def _surface_distances(a: np.ndarray, m: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distances (mm) from every border pixel of ``a`` to the nearest border pixel of ``m``."""
    dt = ndimage.distance_transform_edt(~_border(m), sampling=spacing)
    return dt[_border(a)]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float]) -> float:
    """95th percentile of the symmetric border distances in mm (MedPy's ``hd95``, connectivity 1).

    NaN when both masks are empty; the image diagonal (:func:`image_diagonal`) when exactly one is.
    """
    a, m = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    if a.shape != m.shape:
        raise ValueError(f"pred {a.shape} and ref {m.shape} must have the same shape")
    if not a.any() and not m.any():
        return math.nan
    if not a.any() or not m.any():
        return image_diagonal(a.shape, spacing)
    sp = (float(spacing[0]), float(spacing[1]))
    dists = np.hstack([_surface_distances(a, m, sp), _surface_distances(m, a, sp)])
    return float(np.percentile(dists, 95))


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one case; ``spacing`` starts with (h, w) in mm."""
    a, m = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    if a.shape != m.shape:
        raise ValueError(f"prediction {a.shape} and reference {m.shape} must have the same shape")
    if len(spacing) < 2 or not all(float(s) > 0 for s in spacing[:2]):
        raise ValueError(f"en-face spacing must be two positive numbers (h, w) in mm; got {spacing}")
    h, w = float(spacing[0]), float(spacing[1])
    n_a, n_m = int(a.sum()), int(m.sum())
    inter = int(np.logical_and(a, m).sum())
    both_empty = n_a == 0 and n_m == 0
    failure = (n_a == 0) != (n_m == 0)
    pixel = h * w
    return {
        "dice": 1.0 if both_empty else 2.0 * inter / (n_a + n_m),
        "area_diff_mm2": image_area(a.shape, (h, w)) if failure else abs(n_a - n_m) * pixel,
        "area_diff_signed_mm2": (n_a - n_m) * pixel,
        "area_pred_mm2": n_a * pixel,
        "area_ref_mm2": n_m * pixel,
        "precision": 1.0 if both_empty else (inter / n_a if n_a else 0.0),
        "recall": 1.0 if both_empty else (inter / n_m if n_m else 0.0),
        "hd95_mm": hd95(a, m, (h, w)),
    }


def summarise(cases: pd.DataFrame, by: Iterable[str] = ("test_set", "metric")) -> pd.DataFrame:
    """NaN-aware summary of a long per-case table: n, n_nan, mean, std, median, q1, q3 per group."""
    by = list(by)

    def stats(v: pd.Series) -> pd.Series:
        ok = v.dropna()
        return pd.Series(
            {
                "n": int(v.size),
                "n_nan": int(v.isna().sum()),
                "mean": ok.mean() if ok.size else math.nan,
                "std": ok.std(ddof=1) if ok.size > 1 else math.nan,
                "median": ok.median() if ok.size else math.nan,
                "q1": ok.quantile(0.25) if ok.size else math.nan,
                "q3": ok.quantile(0.75) if ok.size else math.nan,
            }
        )

    out = cases.groupby(by, sort=False)["value"].apply(stats).unstack()
    out["n"] = out["n"].astype(int)
    out["n_nan"] = out["n_nan"].astype(int)
    return out.reset_index()
