"""The OCTA-500 layout, on small fabricated trees in both spellings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from bench3d2d.data import DataError, load_dataset, prepare
from bench3d2d.data.octa500 import looks_like_octa500

N_BSCANS, WIDTH, DEPTH = 12, 10, 24  # 12 B-scans so that "10.bmp" sorts after "9.bmp" only naturally


def bmp(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_subset(
    folder: Path, subjects: list[str], projections: str, gt_inside: bool, label_root: Path
) -> None:
    for k, subject in enumerate(subjects):
        for n in range(1, N_BSCANS + 1):  # B-scan n has value 10 * n everywhere: order is visible
            bmp(folder / "OCT" / subject / f"{n}.bmp", np.full((DEPTH, WIDTH), 10 * n))
            bmp(folder / "OCTA" / subject / f"{n}.bmp", np.full((DEPTH, WIDTH), 5 * n))
        # en-face maps stored as (A-scan, B-scan): a mark at A-scan 2, B-scan 7
        faz = np.zeros((WIDTH, N_BSCANS), np.uint8)
        faz[2, 7] = 255
        vessel = np.zeros((WIDTH, N_BSCANS), np.uint8)
        vessel[:, 0] = 255
        cavf = np.arange(WIDTH * N_BSCANS).reshape(WIDTH, N_BSCANS) % 5  # multi-class: not a mask
        gt_base = folder if gt_inside else label_root
        bmp(gt_base / "GT_FAZ" / f"{subject}.bmp", faz)
        bmp(gt_base / "GT_LargeVessel" / f"{subject}.bmp", vessel)
        bmp(gt_base / "GT_CAVF" / f"{subject}.bmp", cavf)
        proj = np.zeros((WIDTH, N_BSCANS), np.uint8)
        proj[:, 3] = 255
        bmp(folder / projections / "OCT(FULL)" / f"{subject}.bmp", proj)
        if not gt_inside:
            layers = np.zeros((6, N_BSCANS, WIDTH), np.float64)
            layers[5] = 15 + k
            (label_root / "GT_Layers").mkdir(parents=True, exist_ok=True)
            savemat(label_root / "GT_Layers" / f"{subject}.mat", {"Layer": layers})


@pytest.fixture
def tree(tmp_path):
    """Release layout: OCTA_6mm with "Projection Maps" + root Label/; older layout: OCTA_3M with GT inside."""
    root = tmp_path / "OCTA-500"
    make_subset(
        root / "OCTA_6mm", ["10001", "10002"], "Projection Maps", gt_inside=False, label_root=root / "Label"
    )
    make_subset(root / "OCTA_3M", ["10301"], "Projection_Maps", gt_inside=True, label_root=root / "Label")
    return root


def test_reads_both_spellings_in_natural_order_and_transposes_en_face_maps(tree):
    assert looks_like_octa500(tree) and looks_like_octa500(tree / "OCTA_3M")
    ds = load_dataset(str(tree))
    assert sorted(ds.scan_ids) == ["octa500-10001", "octa500-10002", "octa500-10301"]
    assert ds.patient_ids() == ["10001", "10002", "10301"]
    for scan in ds.scans:
        assert scan.volume.shape == (N_BSCANS, WIDTH, DEPTH)
        # natural order: B-scan h is file h+1 ("10.bmp" after "9.bmp"), value 10 * (h + 1) / 255
        np.testing.assert_allclose(scan.volume[:, 0, 0], 10 * np.arange(1, N_BSCANS + 1) / 255, atol=1e-6)
        assert scan.mask.shape == (N_BSCANS, WIDTH) and scan.mask[7, 2] == 1 and scan.mask.sum() == 1
        assert (scan.extra_masks["largevessel"][0] == 1).all() and scan.extra_masks[
            "largevessel"
        ].sum() == WIDTH
        assert "cavf" not in scan.extra_masks  # multi-class map skipped
        assert (scan.extra_maps["OCT(FULL)"][3] == 1).all()
        assert scan.eye == "unknown"
    scans = {s.scan_id: s for s in ds.scans}
    six, six_b, three = scans["octa500-10001"], scans["octa500-10002"], scans["octa500-10301"]
    assert six.spacing_mm == pytest.approx((6 / N_BSCANS, 6 / WIDTH, 2 / DEPTH))
    assert three.spacing_mm == pytest.approx((3 / N_BSCANS, 3 / WIDTH, 2 / DEPTH))
    assert six.bm_surface is not None and (six.bm_surface == 15).all() and six_b.bm_surface[0, 0] == 16
    assert three.bm_surface is None  # the older layout has no layer file


def test_subset_folder_options_and_prepare(tree, tmp_path):
    ds = load_dataset(str(tree / "OCTA_6mm"), label="GT_LargeVessel", modality="OCTA")
    scan = ds.scans[0]
    assert scan.mask[0].all() and "faz" in scan.extra_masks
    np.testing.assert_allclose(scan.volume[:, 0, 0], 5 * np.arange(1, N_BSCANS + 1) / 255, atol=1e-6)
    prepared = prepare(ds, depth=8, cache_dir=tmp_path / "cache")
    case = prepared.case_ids[0]
    assert prepared.volume(case).shape == (N_BSCANS, WIDTH, 8)
    assert prepared.meta(case)["flattened"]  # BM from GT_Layers
    assert prepared.target(case, "map:OCT(FULL)").shape == (N_BSCANS, WIDTH)
    assert prepared.target(case, "mask:faz").sum() == 1


def test_errors_name_the_subject_and_file(tree):
    with pytest.raises(DataError, match=r"OCTA_3M/OCT/10301: no ground truth 'GT_Missing' for subject 10301"):
        load_dataset(str(tree / "OCTA_3M"), label="GT_Missing").scans[0]
    bad = tree / "OCTA_3M" / "OCT" / "10301" / "5.bmp"
    bmp(bad, np.zeros((DEPTH + 1, WIDTH)))
    with pytest.raises(
        DataError, match=r"B-scan .*5\.bmp has shape \(25, 10\), the first \(1\.bmp\) has \(24, 10\)"
    ):
        load_dataset(str(tree / "OCTA_3M")).scans[0]
    plain = tree.parent / "OCTA_other"
    (plain / "OCT" / "1").mkdir(parents=True)
    with pytest.raises(DataError, match="cannot tell the field size"):
        load_dataset(str(plain))


def test_data_check_takes_an_octa500_folder_as_one_dataset(tree):
    from bench3d2d.data.check import find_datasets

    (tree / "notes.csv").write_text("subject,comment\n10001,ok\n")  # not a manifest
    assert find_datasets(tree) == [str(tree)]
