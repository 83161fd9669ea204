"""Per-case metrics of docs/protocol.md §10.3, with hand-computed cases and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench3d2d.evaluation.metrics import METRICS, case_metrics, dice, hd95, image_diagonal, summarise


def _square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_dice_area_precision_recall_by_hand():
    a = _square((10, 10), 2, 5, 2, 5)  # 9 px
    m = _square((10, 10), 3, 6, 2, 6)  # 12 px, overlap rows 3-4 x cols 2-4 = 6 px
    out = case_metrics(a, m, (0.1, 0.02, 0.5))
    assert set(out) == set(METRICS)
    assert out["dice"] == pytest.approx(2 * 6 / 21)
    assert out["precision"] == pytest.approx(6 / 9)
    assert out["recall"] == pytest.approx(6 / 12)
    assert out["area_diff_mm2"] == pytest.approx(3 * 0.1 * 0.02)
    assert out["area_diff_signed_mm2"] == pytest.approx(-3 * 0.1 * 0.02)
    assert out["area_pred_mm2"] == pytest.approx(9 * 0.002)
    assert out["area_ref_mm2"] == pytest.approx(12 * 0.002)


def test_hd95_single_pixels_with_anisotropic_spacing():
    a = np.zeros((5, 7), bool)
    m = np.zeros((5, 7), bool)
    a[1, 1] = True
    m[3, 4] = True
    # one border pixel each: distance sqrt((2*0.5)^2 + (3*0.1)^2) both ways
    assert hd95(a, m, (0.5, 0.1)) == pytest.approx(math.hypot(1.0, 0.3))


def test_hd95_hand_computed_percentile():
    # A: 3x3 block, its border the 8 outer pixels (the centre is eroded); M: the same block one
    # column to the right. The distances are computed here by brute force over the borders, a pixel
    # being border when one of its 4 edge neighbours is background (MedPy's connectivity=1).
    a = _square((8, 8), 2, 5, 2, 5)
    m = _square((8, 8), 2, 5, 3, 6)
    sp = (1.0, 1.0)

    def border(x):
        b = x.copy()
        for i in range(1, 7):
            for j in range(1, 7):
                if x[i, j] and x[i - 1, j] and x[i + 1, j] and x[i, j - 1] and x[i, j + 1]:
                    b[i, j] = False
        return b

    ba, bm = np.argwhere(border(a)), np.argwhere(border(m))
    d_am = [min(np.hypot(*(p - q)) for q in bm) for p in ba]
    d_ma = [min(np.hypot(*(p - q)) for q in ba) for p in bm]
    expected = np.percentile(d_am + d_ma, 95)
    assert hd95(a, m, sp) == pytest.approx(expected)
    assert expected == pytest.approx(1.0)


def test_edge_pixels_count_as_border():
    a = np.ones((3, 3), bool)  # touches the image edge everywhere: erosion is empty, all 9 px are border
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    # M -> A: the centre lies on A's border (0). A -> M: centre 0, 4 edge pixels 1, 4 corners sqrt(2).
    r2 = math.sqrt(2)
    expected = np.percentile([0, 0, 1, 1, 1, 1, r2, r2, r2, r2], 95)
    assert hd95(m, a, (1.0, 1.0)) == pytest.approx(expected)
    assert expected == pytest.approx(r2)


def test_empty_masks():
    empty = np.zeros((6, 6), bool)
    full = _square((6, 6), 1, 3, 1, 3)
    both = case_metrics(empty, empty, (1.0, 1.0))
    assert both["dice"] == 1.0 and both["precision"] == 1.0 and both["recall"] == 1.0
    assert math.isnan(both["hd95_mm"])
    assert both["area_diff_mm2"] == 0.0
    # a failure (exactly one mask empty) gets the worst value of every metric: never a NaN
    miss = case_metrics(empty, full, (0.5, 2.0))
    assert miss["dice"] == 0.0 and miss["precision"] == 0.0 and miss["recall"] == 0.0
    diagonal = image_diagonal((6, 6), (0.5, 2.0))
    assert miss["hd95_mm"] == pytest.approx(math.hypot(6 * 0.5, 6 * 2.0)) == diagonal
    extra = case_metrics(full, empty, (1.0, 1.0))
    assert extra["dice"] == 0.0 and extra["precision"] == 0.0 and extra["recall"] == 0.0
    assert extra["hd95_mm"] == pytest.approx(math.hypot(6, 6))
    assert dice(empty, empty) == 1.0


def test_a_failure_gets_the_worst_area_difference():
    # 6 x 6 image, pixel 0.5 x 2 mm = 1 mm²; reference lesion 4 px (4 mm²)
    empty = np.zeros((6, 6), bool)
    ref = _square((6, 6), 1, 3, 1, 3)
    miss = case_metrics(empty, ref, (0.5, 2.0))
    assert miss["area_diff_mm2"] == pytest.approx(36.0)  # the image area, not the reference's 4 mm²
    assert miss["area_diff_signed_mm2"] == pytest.approx(-4.0) and miss["area_ref_mm2"] == pytest.approx(4.0)
    # a working prediction that over-segments (30 px for 4) is still better: |30 - 4| = 26 < 36
    over = np.ones((6, 6), bool)
    over[0, :6] = False
    assert case_metrics(over, ref, (0.5, 2.0))["area_diff_mm2"] == pytest.approx(26.0)
    # a lesion predicted where there is none is a failure too
    assert case_metrics(ref, empty, (0.5, 2.0))["area_diff_mm2"] == pytest.approx(36.0)


def test_hd95_border_is_medpy_default_connectivity():
    # a plus-shaped mask: its centre is interior under the 4-cross (MedPy's default) but border under
    # the full 3x3 structure; the two definitions give different HD95 here.
    a = np.zeros((9, 9), bool)
    a[2:7, 4] = True
    a[4, 2:7] = True
    a[3:6, 3:6] = True
    m = np.zeros((9, 9), bool)
    m[3:6, 3:7] = True
    assert hd95(a, m, (1.0, 1.0)) == pytest.approx(np.percentile(_brute_distances(a, m), 95))


def _brute_distances(a, m):
    def border(x):
        p = np.pad(x, 1)
        inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return x & ~inner

    ba, bm = np.argwhere(border(a)), np.argwhere(border(m))
    return [min(np.hypot(*(p - q)) for q in bm) for p in ba] + [
        min(np.hypot(*(p - q)) for q in ba) for p in bm
    ]


def test_hd95_agrees_with_medpy():
    binary = pytest.importorskip("medpy.metric.binary", reason="MedPy not installed (pip install '.[test]')")
    rng = np.random.default_rng(7)
    for k in range(12):
        a = ndimage_blob(rng, (40, 56))
        m = ndimage_blob(rng, (40, 56))
        spacing = (float(rng.uniform(0.01, 0.2)), float(rng.uniform(0.005, 0.05)))
        expected = binary.hd95(a, m, voxelspacing=spacing)  # connectivity=1 is MedPy's default
        assert hd95(a, m, spacing) == pytest.approx(expected, rel=1e-12, abs=1e-12), k


def ndimage_blob(rng, shape):
    """A random blob mask: thresholded smoothed noise, never empty."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    mask = field > np.quantile(field, rng.uniform(0.6, 0.9))
    mask[shape[0] // 2, shape[1] // 2] = True
    return mask


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        case_metrics(np.zeros((3, 3)), np.zeros((3, 4)), (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(np.zeros((3, 3)), np.zeros((3, 3)), (0, 1))
    with pytest.raises(ValueError, match="2-D"):
        case_metrics(np.zeros((3, 3, 1)), np.zeros((3, 3, 1)), (1, 1))


def test_summarise_counts_nans():
    df = pd.DataFrame({"test_set": ["t"] * 4, "metric": ["hd95_mm"] * 4, "value": [1.0, np.nan, 3.0, np.nan]})
    s = summarise(df).iloc[0]
    assert s["n"] == 4 and s["n_nan"] == 2
    assert s["mean"] == pytest.approx(2.0)
    assert s["median"] == pytest.approx(2.0)
