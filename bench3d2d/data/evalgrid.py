"""The validation/test grid (docs/protocol.md §4) and the way back to the original grid (§10.2).

H and W are resized to the largest multiple of 16 not above the size (minimum 16); volumes and
continuous maps linearly, masks by nearest neighbour, half-pixel centres, no anti-aliasing, D
unchanged. ``resize_map`` takes a probability map back to the scan's grid (linear, half-pixel),
which is what ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` does.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "eval_shape",
    "eval_size",
    "mask_to_eval_grid",
    "resize_linear",
    "resize_map",
    "resize_nearest",
    "to_eval_grid",
]

MULTIPLE = 16


def eval_size(n: int, multiple: int = MULTIPLE) -> int:
    """Largest multiple of ``multiple`` not above ``n``, at least ``multiple`` (49 -> 48, 8 -> 16)."""
    return max(multiple, (int(n) // multiple) * multiple)


def eval_shape(hw: tuple[int, int], multiple: int = MULTIPLE) -> tuple[int, int]:
    """The evaluation grid ``(H', W')`` for an en-face shape ``(H, W)``."""
    return eval_size(hw[0], multiple), eval_size(hw[1], multiple)


def _linear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of linear interpolation with half-pixel centres (edge-clamped)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0)


def resize_linear(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes of ``arr`` linearly (half-pixel centres, no anti-aliasing), float32."""
    arr = np.asarray(arr, dtype=np.float32)
    H, W = int(hw[0]), int(hw[1])
    out = arr
    if arr.shape[0] != H:
        i0, i1, t = _linear_axis(arr.shape[0], H)
        t = t.reshape((-1,) + (1,) * (arr.ndim - 1)).astype(np.float32)
        out = out[i0] * (1 - t) + out[i1] * t
    if arr.shape[1] != W:
        i0, i1, t = _linear_axis(arr.shape[1], W)
        t = t.reshape((1, -1) + (1,) * (arr.ndim - 2)).astype(np.float32)
        out = out[:, i0] * (1 - t) + out[:, i1] * t
    return np.ascontiguousarray(out, dtype=np.float32)


def resize_nearest(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes by nearest neighbour with half-pixel centres (for masks)."""
    arr = np.asarray(arr)
    ih = np.minimum(((np.arange(hw[0]) + 0.5) * arr.shape[0] / hw[0]).astype(np.int64), arr.shape[0] - 1)
    iw = np.minimum(((np.arange(hw[1]) + 0.5) * arr.shape[1] / hw[1]).astype(np.int64), arr.shape[1] - 1)
    return np.ascontiguousarray(arr[ih][:, iw])


def to_eval_grid(volume: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    """Resize a volume ``(H, W, D)`` (or a map ``(H, W)``) to the evaluation grid, linearly."""
    volume = np.asarray(volume)
    hw = eval_shape(volume.shape[:2], multiple)
    if tuple(volume.shape[:2]) == hw:
        return np.asarray(volume, dtype=np.float32)
    return resize_linear(volume, hw)


def mask_to_eval_grid(mask: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    """Resize a mask ``(H, W)`` to the evaluation grid by nearest neighbour."""
    return resize_nearest(mask, eval_shape(mask.shape[:2], multiple))


def resize_map(prob: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an en-face map ``(h, w)`` back to ``hw`` linearly with half-pixel centres (float32)."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"resize_map expects a 2-D map (h, w), got shape {prob.shape}")
    return resize_linear(prob, hw)
