"""Preprocessing as docs/protocol.md §2: flatten at Bruch's membrane, resize depth, z-score per B-scan,
2-D images to [0, 1], FAF inversion, masks binarised. Plain functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.transform import resize as sk_resize

from bench3d2d.data.evalgrid import resize_nearest
from bench3d2d.data.records import DataError, Scan

__all__ = [
    "PreparedArrays",
    "area_resample",
    "binarize_mask",
    "fill_missing",
    "flatten_at_bm",
    "image_to_unit",
    "preprocess_scan",
    "resize_depth",
    "zscore_bscans",
]


def fill_missing(surface: np.ndarray) -> np.ndarray:
    """Replace NaN values of a 2-D surface by the nearest valid value (all NaN -> error)."""
    surface = np.asarray(surface, dtype=np.float64)
    bad = ~np.isfinite(surface)
    if not bad.any():
        return surface
    if bad.all():
        raise DataError("BM surface has no valid value")
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return surface[tuple(idx)]


def flatten_at_bm(volume: np.ndarray, bm: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift each A-scan by whole pixels so BM lands on the median BM row (§2.2); returns (volume, row).

    Voxels shifted in from outside are 0; missing BM values take the nearest valid value.
    """
    bm = fill_missing(bm)
    H, _, D = volume.shape
    row = int(np.clip(np.round(np.median(bm)), 0, D - 1))
    shift = np.round(row - bm).astype(np.int64)  # positive: move the A-scan deeper
    out = np.zeros(volume.shape, dtype=np.float32)
    z = np.arange(D, dtype=np.int64)
    for h in range(H):  # per B-scan keeps the index array small for paper-size volumes
        src = z[None, :] - shift[h][:, None]
        valid = (src >= 0) & (src < D)
        vals = np.take_along_axis(volume[h], np.clip(src, 0, D - 1), axis=1)
        out[h] = np.where(valid, vals, 0.0)
    return out, row


def resize_depth(volume: np.ndarray, depth: int) -> np.ndarray:
    """Resize D to ``depth``: linear, Gaussian anti-aliasing when shrinking (scikit-image's default)."""
    D = volume.shape[2]
    if depth == D:
        return np.asarray(volume, dtype=np.float32)
    out = sk_resize(
        volume.astype(np.float32, copy=False),
        (*volume.shape[:2], int(depth)),
        order=1,
        anti_aliasing=depth < D,
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)


def zscore_bscans(volume: np.ndarray) -> np.ndarray:
    """(x - μ_h) / σ_h per B-scan h with the population SD; a constant B-scan becomes zeros (§2.4)."""
    v = volume.astype(np.float64, copy=False)
    mu = v.mean(axis=(1, 2), keepdims=True)
    sd = v.std(axis=(1, 2), keepdims=True)
    out = np.where(sd > 0, (v - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    return out.astype(np.float32)


def image_to_unit(img: np.ndarray, where: str = "image") -> np.ndarray:
    """A 2-D image as float32 in [0, 1]: integers / their type's maximum (8-bit: / 255), floats as given.

    Floats outside [0, 1] are accepted when they look 8-bit (max ≤ 255, min ≥ 0) and divided by 255;
    anything else is an error naming ``where``.
    """
    arr = np.asarray(img)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise DataError(f"{where}: negative pixel values in an integer image")
        top = 255 if arr.max() <= 255 else np.iinfo(arr.dtype).max
        return (arr.astype(np.float32) / np.float32(top)).astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: NaN or inf pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 1:
        return arr
    if lo >= 0 and hi <= 255:
        return arr / np.float32(255)
    raise DataError(f"{where}: float image with range [{lo:.4g}, {hi:.4g}], expected [0, 1] or [0, 255]")


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of area averaging: overlap of output cells with input pixels."""
    edges = np.linspace(0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def area_resample(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resample a 2-D image to ``hw`` by area averaging (exact box overlaps; float32)."""
    img = np.asarray(img, dtype=np.float64)
    if img.shape == tuple(hw):
        return img.astype(np.float32)
    a = _area_matrix(img.shape[0], int(hw[0]))
    b = _area_matrix(img.shape[1], int(hw[1]))
    return (a @ img @ b.T).astype(np.float32)


def binarize_mask(mask: np.ndarray, hw: tuple[int, int] | None = None, where: str = "mask") -> np.ndarray:
    """Scale a mask to [0, 1], binarise at ≥ 0.5, resample to ``hw`` by nearest neighbour; uint8."""
    unit = image_to_unit(mask, where)
    out = (unit >= 0.5).astype(np.uint8)
    if hw is not None and out.shape != tuple(hw):
        out = resize_nearest(out, hw)
    return out


@dataclass
class PreparedArrays:
    """One preprocessed scan: the volume, its 2-D targets by key, spacing and metadata."""

    volume: np.ndarray
    targets: dict[str, np.ndarray]
    spacing_mm: tuple[float, float, float]
    meta: dict = field(default_factory=dict)


def preprocess_scan(scan: Scan, depth: int, flatten: bool = True) -> PreparedArrays:
    """Apply §2 to one (checked) scan: flatten → depth resize → z-score; targets as float32 maps.

    Target keys: ``mask``, ``mask:<name>`` (extra raters), ``slo``, ``faf`` (= 1 − FAF, the
    reconstruction target), ``map:<name>`` (extra en-face maps).
    """
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    vol = np.asarray(scan.volume, dtype=np.float32)
    H, W, D = vol.shape
    meta: dict = {"raw_shape": [H, W, D], "raw_spacing_mm": list(map(float, scan.spacing_mm))}
    if flatten and scan.bm_surface is not None:
        vol, row = flatten_at_bm(vol, np.asarray(scan.bm_surface))
        meta.update(flattened=True, bm_row_raw=row, bm_row=float((row + 0.5) * depth / D - 0.5))
    else:
        reason = "disabled" if not flatten else "no BM surface"
        meta.update(flattened=False, flatten_skipped=reason)
    vol = zscore_bscans(resize_depth(vol, depth))
    h, w, d = (float(s) for s in scan.spacing_mm)
    targets: dict[str, np.ndarray] = {}
    if scan.mask is not None:
        targets["mask"] = np.asarray(scan.mask, dtype=np.float32)
    for name, m in scan.extra_masks.items():
        targets[f"mask:{name}"] = np.asarray(m, dtype=np.float32)
    if scan.slo is not None:
        targets["slo"] = np.asarray(scan.slo, dtype=np.float32)
    if scan.faf is not None:
        targets["faf"] = (1.0 - np.asarray(scan.faf, dtype=np.float32)).astype(np.float32)
    for name, m in scan.extra_maps.items():
        targets[f"map:{name}"] = np.asarray(m, dtype=np.float32)
    return PreparedArrays(volume=vol, targets=targets, spacing_mm=(h, w, d * D / depth), meta=meta)
