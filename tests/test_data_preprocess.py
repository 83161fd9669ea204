"""Preprocessing (docs/protocol.md §2), the evaluation grid (§4, §10.2) and the prepared cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench3d2d.data import (
    DataError,
    Dataset,
    Scan,
    ScanRef,
    eval_size,
    open_prepared,
    prepare,
    resize_map,
    to_eval_grid,
)
from bench3d2d.data.evalgrid import mask_to_eval_grid
from bench3d2d.data.preprocess import area_resample, flatten_at_bm, resize_depth, zscore_bscans


def _scan(sid="s0", pid="p0", shape=(4, 12, 30), seed=0, **kw) -> Scan:
    rng = np.random.default_rng(seed)
    H, W, _ = shape
    defaults = dict(
        volume=rng.random(shape).astype(np.float32),
        spacing_mm=(0.1, 0.02, 0.01),
        slo=rng.random((H, W)).astype(np.float32),
        faf=rng.random((H, W)).astype(np.float32),
        mask=(rng.random((H, W)) > 0.5).astype(np.uint8),
        extra_masks={"rater2": np.ones((H, W), np.uint8)},
        bm_surface=(18 + rng.integers(-3, 4, (H, W))).astype(np.float32),
    )
    defaults.update(kw)
    return Scan(scan_id=sid, patient_id=pid, eye="OD", visit=1, **defaults)


def test_flatten_puts_bm_on_one_row_and_fills_with_zeros():
    vol = np.zeros((2, 5, 20), np.float32)
    bm = np.array([[5, 8, 10, 12, np.nan]] * 2, dtype=np.float32)
    for h in range(2):
        for w in range(5):
            b = int(bm[h, w]) if np.isfinite(bm[h, w]) else 12  # nearest valid value for the NaN
            vol[h, w, b] = 1.0
            vol[h, w, 0] = 0.5  # the top row: shifted out or down
    flat, row = flatten_at_bm(vol + 0.0, bm)
    assert row == 10  # median of 5, 8, 10, 12, 12
    assert (flat[:, :, row] == 1).all() and flat.sum(axis=2).max() <= 1.5
    assert flat[0, 0, 0] == 0  # A-scan shifted down by 5: zeros came in at the top
    assert flat[0, 0, 5] == 0.5


def test_resize_depth_and_zscore():
    rng = np.random.default_rng(1)
    vol = rng.random((3, 4, 50)).astype(np.float32)
    small = resize_depth(vol, 16)
    assert small.shape == (3, 4, 16) and small.dtype == np.float32
    assert abs(small.mean() - vol.mean()) < 0.05
    vol[1] = 7.0  # a constant B-scan
    z = zscore_bscans(vol)
    np.testing.assert_allclose(z[[0, 2]].mean(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(z[[0, 2]].std(axis=(1, 2)), 1, atol=1e-5)  # population SD
    assert (z[1] == 0).all()


def test_area_resample_preserves_the_mean_and_averages_boxes():
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = area_resample(img, (2, 4))
    np.testing.assert_allclose(out[0, 0], img[:4, :2].mean())
    np.testing.assert_allclose(out.mean(), img.mean(), rtol=1e-6)
    out3 = area_resample(img, (3, 8))  # non-integer factor
    np.testing.assert_allclose(out3.mean(), img.mean(), rtol=1e-6)


def test_eval_grid_rule_and_way_back_match_torch():
    assert [eval_size(n) for n in (49, 512, 97, 8, 16, 1024)] == [48, 512, 96, 16, 16, 1024]
    vol = np.random.default_rng(0).random((49, 40, 3)).astype(np.float32)
    grid = to_eval_grid(vol)
    assert grid.shape == (48, 32, 3)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(vol).permute(2, 0, 1)[None], size=(48, 32), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0)
    np.testing.assert_allclose(grid, ref.numpy(), atol=1e-5)
    prob = grid[..., 0]
    back = resize_map(prob, (49, 40))
    ref_back = torch.nn.functional.interpolate(
        torch.from_numpy(prob)[None, None], size=(49, 40), mode="bilinear", align_corners=False
    )[0, 0]
    np.testing.assert_allclose(back, ref_back.numpy(), atol=1e-5)
    mask = (np.random.default_rng(1).random((49, 40)) > 0.5).astype(np.uint8)
    assert set(np.unique(mask_to_eval_grid(mask))) <= {0, 1}


def test_prepare_applies_the_protocol(tmp_path):
    scans = [_scan("a", "p0", seed=0), _scan("b", "p1", seed=1, bm_surface=None)]
    prepared = prepare(Dataset("toy", scans), depth=16, cache_dir=tmp_path)
    assert prepared.case_ids == ["a", "b"]
    vol = prepared.volume("a")
    assert isinstance(vol, np.memmap) and vol.shape == (4, 12, 16) and vol.dtype == np.float32
    np.testing.assert_allclose(np.asarray(vol).std(axis=(1, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(prepared.target("a", "faf"), 1 - scans[0].faf, atol=1e-7)  # inverted
    np.testing.assert_allclose(prepared.target("a", "slo"), scans[0].slo)
    assert prepared.target("a", "mask:rater2").sum() == 4 * 12
    assert prepared.target("a", "missing") is None
    assert prepared.spacing("a") == pytest.approx((0.1, 0.02, 0.01 * 30 / 16))
    assert prepared.meta("a")["flattened"] and not prepared.meta("b")["flattened"]
    assert prepared.meta("b")["flatten_skipped"] == "no BM surface"
    assert prepared.patient("b") == "p1" and prepared.subset(["b"]).case_ids == ["b"]
    reopened = open_prepared(prepared.root)
    np.testing.assert_array_equal(reopened.volume("b"), prepared.volume("b"))


def test_second_prepare_reads_the_cache_and_a_changed_parameter_makes_a_new_entry(tmp_path):
    calls = []

    def loader(i):
        calls.append(i)
        return _scan(f"s{i}", f"p{i}", seed=i)

    items = [ScanRef(f"s{i}", f"p{i}", "OD", 1, loader=lambda i=i: loader(i)) for i in range(3)]
    ds = Dataset("lazy", items)
    first = prepare(ds, depth=16, cache_dir=tmp_path)
    assert calls == [0, 1, 2]
    second = prepare(ds, depth=16, cache_dir=tmp_path)
    assert calls == [0, 1, 2]  # nothing loaded again
    assert second.key == first.key
    np.testing.assert_array_equal(second.volume("s1"), first.volume("s1"))
    third = prepare(ds, depth=8, cache_dir=tmp_path)
    assert third.key != first.key and third.root != first.root and len(calls) == 6
    fourth = prepare(ds, depth=16, cache_dir=tmp_path, flatten=False)
    assert fourth.key not in (first.key, third.key)


def test_bad_scan_leaves_nothing_half_written(tmp_path):
    bad_vol = np.ones((4, 12, 30), np.float32)
    bad_vol[1, 2, 3] = np.nan
    items = [
        ScanRef("good", "p0", "OD", 1, loader=lambda: _scan("good", "p0")),
        ScanRef("bad", "p1", "OD", 1, loader=lambda: _scan("bad", "p1", volume=bad_vol), where="row 2"),
    ]
    with pytest.raises(
        DataError, match=r"row 2: volume has 1 NaN and 0 inf voxels \(first at \(h, w, d\) = \(1, 2, 3\)\)"
    ):
        prepare(Dataset("broken", items), depth=16, cache_dir=tmp_path)
    (root,) = tmp_path.iterdir()
    assert sorted(p.name for p in root.iterdir()) == ["good"]  # complete entry only, no temp folders
    assert sorted(p.name for p in (root / "good").iterdir()) == [
        "faf.npy",
        "mask.npy",
        "mask@rater2.npy",
        "meta.json",
        "slo.npy",
        "volume.npy",
    ]


def test_empty_dataset_and_duplicate_ids_are_errors(tmp_path):
    with pytest.raises(DataError, match="empty"):
        Dataset("none", [])
    with pytest.raises(DataError, match="duplicate scan id 'a'"):
        Dataset("dup", [_scan("a"), _scan("a", "p1")])
    empty = Dataset("toy", [_scan("a")]).subset([])
    with pytest.raises(DataError, match="nothing to prepare"):
        prepare(empty, depth=8, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mask": np.full((4, 12), 2, np.uint8)}, "mask is not binary"),
        (
            {"mask": np.zeros((4, 11), np.uint8)},
            r"mask has shape \(4, 11\), the volume's en-face shape \(H, W\) is \(4, 12\)",
        ),
        ({"slo": np.full((4, 12), 1.5, np.float32)}, r"slo must lie in \[0, 1\]"),
        ({"volume": np.full((4, 12, 30), np.inf, np.float32)}, "inf voxels"),
        ({"spacing_mm": (0.1, 0.0, 0.01)}, "spacing_mm must be three positive numbers"),
    ],
)
def test_scan_check_names_the_problem(kw, message):
    with pytest.raises(DataError, match=message):
        _scan(**kw).check()
