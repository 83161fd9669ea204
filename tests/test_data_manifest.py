"""Folder + manifest ("bring your own data"): the documented example, formats, and every bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from bench3d2d.data import DataError, load_dataset, prepare

DOC = Path(__file__).resolve().parents[1] / "docs" / "data.md"
H, W, D = 4, 16, 20


def test_documented_worked_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = DOC.read_text()
    section = text[text.index("### Worked example") :]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(8, 32, 16)" and out[1] == "1.0"
    assert out[2] == "(0.12, 0.012, 0.01)"
    assert (tmp_path / "cache").is_dir() and (tmp_path / "my_study" / "manifest.csv").is_file()


def make_folder(root: Path, n: int = 3, fmt: str = "npy") -> list[dict]:
    """n scans of two patients with volume, slo, faf, mask, a second rater and BM."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        sid = f"s{i}"
        vol = rng.random((H, W, D)).astype(np.float32)
        if fmt == "npy":
            np.save(root / f"{sid}.npy", vol)
            vol_name = f"{sid}.npy"
        elif fmt == "nii":
            nib.save(nib.Nifti1Image(vol, np.diag([0.2, 0.03, 0.005, 1.0])), root / f"{sid}.nii.gz")
            vol_name = f"{sid}.nii.gz"
        else:
            tifffile.imwrite(root / f"{sid}.tif", vol, photometric="minisblack")
            vol_name = f"{sid}.tif"
        mask = np.zeros((H, W), np.uint8)
        mask[1:3, 4:9] = 255
        Image.fromarray(mask).save(root / f"{sid}_mask.png")
        Image.fromarray((mask // 255).astype(np.uint8)).save(root / f"{sid}_r2.png")
        Image.fromarray((rng.random((H, W)) * 255).astype(np.uint8)).save(root / f"{sid}_slo.png")
        np.save(root / f"{sid}_faf.npy", rng.random((H, W)).astype(np.float32))
        np.save(root / f"{sid}_bm.npy", np.full((H, W), 12.0, np.float32))
        row = {
            "scan_id": sid,
            "patient_id": f"p{i % 2}",
            "eye": "R" if i % 2 else "left",
            "visit": 1 + i // 2,
            "volume": vol_name,
            "slo": f"{sid}_slo.png",
            "faf": f"{sid}_faf.npy",
            "mask": f"{sid}_mask.png",
            "mask_rater2": f"{sid}_r2.png",
            "bm": f"{sid}_bm.npy",
        }
        if fmt != "nii":
            row.update(spacing_h=0.2, spacing_w=0.03, spacing_d=0.005)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["npy", "nii", "tif"])
def test_formats_read_to_the_same_scan(tmp_path, fmt):
    rows = make_folder(tmp_path, fmt=fmt)
    ds = load_dataset(str(write_csv(tmp_path / "manifest.csv", rows)))
    assert ds.patient_ids() == ["p0", "p1"] and len(ds) == 3
    s = ds.scans[1]
    assert s.volume.shape == (H, W, D) and s.eye == "OD" and ds.scans[0].eye == "OS" and s.visit == 1
    assert s.spacing_mm == pytest.approx((0.2, 0.03, 0.005))  # NIfTI: from the header
    assert s.mask.dtype == np.uint8 and s.mask.sum() == 10 and (s.extra_masks["rater2"] == s.mask).all()
    assert s.slo.min() >= 0 and s.slo.max() <= 1 and s.faf.shape == (H, W)
    assert s.bm_surface.shape == (H, W)


def test_json_manifest_with_defaults_and_axes(tmp_path):
    rows = make_folder(tmp_path, n=2)
    vol = np.load(tmp_path / "s0.npy")
    np.save(tmp_path / "s0_hdw.npy", np.transpose(vol, (0, 2, 1)))  # stored as B-scans (depth x width)
    for r in rows:
        for k in ("spacing_h", "spacing_w", "spacing_d"):
            r.pop(k)
    rows[0].update(volume="s0_hdw.npy", volume_axes="HDW")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"defaults": {"spacing": [0.2, 0.03, 0.005]}, "scans": rows}))
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.scans[0].volume, vol)
    assert ds.scans[1].spacing_mm == pytest.approx((0.2, 0.03, 0.005))


def test_resample_2d_is_opt_in(tmp_path):
    rows = make_folder(tmp_path, n=1)
    Image.fromarray(np.zeros((2 * H, 2 * W), np.uint8)).save(tmp_path / "big_slo.png")
    rows[0]["slo"] = "big_slo.png"
    with pytest.raises(
        DataError, match=r"row 1 \(scan 's0'\): slo .*big_slo\.png has shape \(8, 32\).*resample_2d"
    ):
        load_dataset(str(write_csv(tmp_path / "manifest.csv", rows))).scans[0]
    rows[0]["resample_2d"] = "true"
    scan = load_dataset(str(write_csv(tmp_path / "manifest.csv", rows))).scans[0]
    assert scan.slo.shape == (H, W)


# ---- every bad input: a clear error naming the file or row, nothing half-written into the cache ----


def _assert_cache_clean(cache: Path) -> None:
    for folder in cache.glob("*"):
        for entry in folder.iterdir():
            assert not entry.name.startswith("."), f"temporary entry left behind: {entry}"
            if entry.is_dir():
                assert (entry / "meta.json").is_file() and (entry / "volume.npy").is_file()


def _prepare_error(tmp_path: Path, rows: list[dict], match: str) -> None:
    manifest = write_csv(tmp_path / "manifest.csv", rows)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=match):
        prepare(load_dataset(str(manifest)), depth=8, cache_dir=cache)
    _assert_cache_clean(cache)
    assert not any(cache.glob("*/s2"))  # the bad scan (row 3) has no entry


def test_missing_file_names_the_row(tmp_path):
    rows = make_folder(tmp_path)
    rows[1]["mask"] = "nope.png"
    with pytest.raises(
        DataError, match=r"manifest\.csv row 2 \(scan 's1'\): mask file not found: .*nope\.png"
    ):
        load_dataset(str(write_csv(tmp_path / "manifest.csv", rows)))


def test_truncated_volume(tmp_path):
    rows = make_folder(tmp_path)
    data = (tmp_path / "s2.npy").read_bytes()
    (tmp_path / "s2.npy").write_bytes(data[: len(data) // 2])
    _prepare_error(tmp_path, rows, r"row 3 \(scan 's2'\): .*s2\.npy: unreadable or truncated volume")


def test_unreadable_nifti(tmp_path):
    rows = make_folder(tmp_path, fmt="nii")
    (tmp_path / "s2.nii.gz").write_bytes(b"not a nifti at all")
    _prepare_error(tmp_path, rows, r"row 3 \(scan 's2'\): .*s2\.nii\.gz: unreadable or truncated volume")


def test_volume_and_mask_shapes_disagree(tmp_path):
    rows = make_folder(tmp_path)
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(tmp_path / "s2_mask.png")
    _prepare_error(
        tmp_path, rows, r"row 3 \(scan 's2'\): mask .*s2_mask\.png has shape \(4, 17\), .*\(4, 16\)"
    )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_voxels(tmp_path, value):
    rows = make_folder(tmp_path)
    vol = np.load(tmp_path / "s2.npy")
    vol[0, 1, 2] = value
    np.save(tmp_path / "s2.npy", vol)
    _prepare_error(tmp_path, rows, r"row 3 \(scan 's2'\): .*s2\.npy: \d NaN and \d inf voxels .*\(0, 1, 2\)")


def test_mask_not_binary(tmp_path):
    rows = make_folder(tmp_path)
    mask = np.zeros((H, W), np.uint8)
    mask[0, :3] = (0, 128, 255)
    Image.fromarray(mask).save(tmp_path / "s2_mask.png")
    _prepare_error(
        tmp_path, rows, r"row 3 \(scan 's2'\): mask .*s2_mask\.png: mask is not binary \(values 0, 128, 255"
    )


def test_empty_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("scan_id,patient_id,volume\n")
    with pytest.raises(DataError, match=r"manifest\.csv: the manifest lists no scans \(empty dataset\)"):
        load_dataset(str(tmp_path))
    (tmp_path / "manifest.csv").unlink()
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(DataError, match="empty dataset"):
        load_dataset(str(tmp_path))


def test_duplicate_scan_ids(tmp_path):
    rows = make_folder(tmp_path)
    rows[2]["scan_id"] = "s0"
    with pytest.raises(DataError, match=r"row 3: duplicate scan id 's0' \(first in row 1\)"):
        load_dataset(str(write_csv(tmp_path / "manifest.csv", rows)))


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("eye", "middle", "eye must be OD or OS"),
        ("visit", "1.5", "visit must be an integer"),
        ("spacing_w", "-1", "spacing must be three positive numbers"),
        ("volume_axes", "HWX", "volume_axes must be a permutation"),
        ("patient_id", "", "missing patient_id"),
    ],
)
def test_bad_header_fields(tmp_path, key, value, match):
    rows = make_folder(tmp_path)
    rows[1][key] = value
    with pytest.raises(DataError, match=r"row 2 .*" + match):
        load_dataset(str(write_csv(tmp_path / "manifest.csv", rows)))


def test_changed_file_refreshes_the_cache_entry(tmp_path):
    rows = make_folder(tmp_path, n=2)
    manifest = write_csv(tmp_path / "manifest.csv", rows)
    first = prepare(load_dataset(str(manifest)), depth=8, cache_dir=tmp_path / "cache")
    before = np.asarray(first.volume("s1")).copy()
    np.save(tmp_path / "s1.npy", np.random.default_rng(9).random((H, W, D)).astype(np.float32) * 3)
    second = prepare(load_dataset(str(manifest)), depth=8, cache_dir=tmp_path / "cache")
    assert second.key == first.key
    assert not np.allclose(np.asarray(second.volume("s1")), before)
