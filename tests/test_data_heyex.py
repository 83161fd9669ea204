"""Heidelberg .vol through eyepy: the real test file from ../shared, and fabricated files of known content."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from bench3d2d.data import DataError, load_dataset, prepare
from bench3d2d.data.heyex import localizer_to_bscan_grid, read_vol, read_vol_header

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_VOL = SHARED / "data" / "heyex" / "test_volume.vol"


def real_vol() -> Path:
    if not REAL_VOL.is_file():
        pytest.skip(
            f"the shared test data is absent ({REAL_VOL} not found; it lives in ../shared beside the project)"
        )
    return REAL_VOL


def write_vol(path: Path, *, n=6, depth=32, width=40, layers=True, monkeypatch=None) -> dict:
    """Write a small .vol with eyepy's format definition: B-scans, positions, a BM layer, a localizer.

    The localizer (100 x 100 px, 0.05 mm/px) is bright (200) on rows 28-47, grey (100) on rows 20-27
    and dark elsewhere, plus a gradient along the columns; B-scans run along x from 1.0 to 4.0 mm
    (columns 20-80) at y = 2.5 mm (B-scan 0, row 50) up to 1.25 mm (B-scan 5, row 25).
    """
    from eyepy.io import utils as eyepy_utils
    from eyepy.io.he.vol_reader import vol_format

    # eyepy's IntDate encoder returns a float where the format needs an integer (eyepy 0.21 writer bug)
    cls = type(eyepy_utils.IntDate)
    original = cls._encode
    monkeypatch.setattr(cls, "_encode", lambda self, obj, ctx, p: round(original(self, obj, ctx, p)))
    rng = np.random.default_rng(0)
    data = (rng.random((n, depth, width)) * 0.3).astype(np.float32)
    loc = np.zeros((100, 100), np.uint8)
    loc[28:48, :] = 200
    loc[20:28, :] = 100
    loc += np.arange(100, dtype=np.uint8)[None, :] // 4  # +0..24 along columns
    bm = np.full((n, width), 20.0, np.float32) + np.arange(n, dtype=np.float32)[:, None]
    bscans = []
    for i in range(n):
        seg = np.full((17, width), np.finfo(np.float32).max, np.float32)
        if layers:
            seg[0] = 5.0
            seg[1] = bm[i]
        y = 2.5 - i * 0.25
        bscans.append(
            dict(
                bscan_hdr_size=256 + 17 * 4 * width,
                start_x=1.0,
                start_y=y,
                end_x=4.0,
                end_y=y,
                num_seg=17 if layers else 0,
                quality=30.0,
                shift=0,
                iv_transformation=[0] * 6,
                layer_segmentations=seg if layers else np.zeros((0, width), np.float32),
                data=data[i],
            )
        )
    header = dict(
        size_x=width,
        size_y=depth,
        n_bscans=n,
        scale_x=3.0 / (width - 1),
        scale_y=0.0039,
        distance=0.25,
        size_x_slo=100,
        size_y_slo=100,
        scale_x_slo=0.05,
        scale_y_slo=0.05,
        field_size_slo=30,
        scan_focus=0.0,
        scan_position="OS",
        exam_time="2020-01-02T00:00:00",
        scan_pattern=3,
        id="1",
        reference_id="",
        pid=7,
        patient_id="P7",
        dob="1950-01-01T00:00:00",
        vid=0,
        visit_id="",
        visit_date="2020-01-02T00:00:00",
        grid_type=0,
        grid_offset=0,
        grid_type1=0,
        grid_offset1=0,
        prog_id="",
        localizer=loc,
        bscans=bscans,
    )
    path.write_bytes(vol_format.build(header))
    return {"data": data, "bm": bm, "localizer": loc}


def test_real_file_is_read_and_oriented():
    path = real_vol()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the localizer fits through the field-of-view scale: no warning
        scan = read_vol(path)
    assert scan.volume.shape == (10, 50, 40)  # 10 B-scans of 50 A-scans, 40 px deep -> (H, W, D)
    assert scan.volume.dtype == np.float32 and scan.volume.min() >= 0 and scan.volume.max() <= 1
    assert scan.spacing_mm == pytest.approx((0.031444, 0.011819, 0.003872), rel=1e-4)
    assert scan.eye == "OD" and scan.patient_id == "Study-01" and scan.visit == 1
    assert scan.bm_surface is None and scan.meta["bm_status"] == "no BM layer in the file"
    # the file's localizer is 50 x 50 px but its header keeps the native 0.0118 mm/px: the scanned
    # region is found through the 30-degree field of view instead, and recorded
    assert scan.slo is not None and scan.slo.shape == (10, 50)
    assert "field of view" in scan.meta["slo_status"]
    header = read_vol_header(path)
    assert header["scan_position"].startswith("OD")


def test_real_file_through_load_dataset_and_prepare(tmp_path):
    path = real_vol()
    for target in (path, path.parent):
        ds = load_dataset(str(target))
        assert len(ds) == 1 and ds.items[0].patient_id == "Study-01"
    prepared = prepare(ds, depth=16, cache_dir=tmp_path)
    case = prepared.case_ids[0]
    assert prepared.volume(case).shape == (10, 50, 16)
    assert prepared.meta(case)["flatten_skipped"] == "no BM surface"
    assert prepared.target(case, "slo").shape == (10, 50)


def test_localizer_strict_mode_and_truncated_file(tmp_path):
    path = real_vol()
    truncated = tmp_path / "truncated.vol"
    truncated.write_bytes(path.read_bytes()[:5000])  # a temporary copy, cut short
    with pytest.raises(DataError, match=r"truncated\.vol: truncated or unreadable Heidelberg \.vol file"):
        read_vol(truncated)
    not_vol = tmp_path / "x.vol"
    not_vol.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"x\.vol: not a"):
        read_vol(not_vol)
    with pytest.raises(FileNotFoundError, match=r"missing\.vol"):
        read_vol(tmp_path / "missing.vol")


def test_fabricated_file_crop_orientation_and_bm(tmp_path, monkeypatch):
    path = tmp_path / "fab.vol"
    truth = write_vol(path, monkeypatch=monkeypatch)
    scan = read_vol(path, localizer="require")
    assert scan.volume.shape == (6, 40, 32) and scan.eye == "OS" and scan.patient_id == "P7"
    assert scan.spacing_mm == pytest.approx((0.25, 3.0 / 39, 0.0039))
    # BM layer -> (H, W) surface, B-scan h keeps the file's order
    np.testing.assert_allclose(scan.bm_surface, truth["bm"])
    # SLO row h lies under B-scan h: B-scan 0 (rows 47.5-52.5) dark, 1-4 bright, 5 (rows 22.5-27.5) grey
    assert scan.slo[0].mean() < 0.12 and (scan.slo[1:5].mean(axis=1) > 0.8).all()
    assert 0.4 < scan.slo[5].mean() < 0.5
    # the crop spans columns 20..80: the column gradient rises from about (20 // 4) to (80 // 4) / 255
    assert scan.slo[2, 0] == pytest.approx((200 + 5) / 255, abs=0.01)
    assert scan.slo[2, -1] == pytest.approx((200 + 20) / 255, abs=0.01)
    # raw intensities: eyepy's display transform of the stored B-scans, transposed to (H, W, D)
    from eyepy.core.utils import from_vol_intensity

    expected = from_vol_intensity(truth["data"].copy()).transpose(0, 2, 1) / 255
    np.testing.assert_allclose(scan.volume, expected, atol=1e-6)


def test_fabricated_file_without_layers_and_visits(tmp_path, monkeypatch):
    write_vol(tmp_path / "a.vol", layers=False, monkeypatch=monkeypatch)
    write_vol(tmp_path / "b.vol", monkeypatch=monkeypatch)
    ds = load_dataset(str(tmp_path))
    assert [it.visit for it in ds.items] == [1, 2]  # same patient and eye: numbered by date, then name
    assert ds.scans[0].bm_surface is None and ds.scans[1].bm_surface is not None


def test_localizer_resampling_of_a_rotated_pattern():
    loc = np.zeros((60, 60))
    loc[:, 30:] = 1.0  # right half bright
    # vertical B-scans (rotated 90 degrees): each B-scan runs down one column, B-scans step along x
    starts = np.array([[10.0 + 4 * i, 10.0] for i in range(10)])
    ends = np.array([[10.0 + 4 * i, 50.0] for i in range(10)])
    out = localizer_to_bscan_grid(loc, starts, ends, (1.0, 1.0), n_ascans=20)
    assert out.shape == (10, 20)
    assert (out[:4] < 0.1).all() and (out[6:] > 0.9).all()  # B-scans left of x = 30 are dark
    with pytest.raises(ValueError, match="outside the 60x60 localizer"):
        localizer_to_bscan_grid(loc, starts + 100, ends + 100, (1.0, 1.0), n_ascans=20)
