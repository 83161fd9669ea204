"""``bench3d2d data check``: every fault of a user's dataset in one line each, before any training
(issue 22b). Manifests are tiny (8 x 32 x 16 volumes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _manifests import HEADER, manifest, scan_files

from bench3d2d.cli import main, one_line_warning
from bench3d2d.data import DataError, load_dataset
from bench3d2d.data.check import CheckOptions, check_dataset, find_datasets
from bench3d2d.data.records import DataWarning


def broken_studies(root: Path) -> dict[str, Path]:
    """One manifest per fault, plus two good studies whose manifests share a file name."""

    def nan(i, row):
        if i == 1:
            row["volume"] = scan_files(root / "nan", 9, nan=True)[0]
        return row

    def values(i, row):
        if i == 2:
            row["mask"] = scan_files(root / "maskvalues", 8, mask_value=2.0)[1]
        return row

    (root / "nan").mkdir(parents=True)
    (root / "maskvalues").mkdir(parents=True)
    return {
        "missing_column": manifest(
            root / "missing_column" / "manifest.csv", header=[h for h in HEADER if h != "patient_id"]
        ),
        "duplicate_id": manifest(
            root / "duplicate_id" / "manifest.csv",
            edit=lambda i, r: {**r, "scan_id": "s0" if i == 3 else r["scan_id"]},
        ),
        "missing_file": manifest(
            root / "missing_file" / "manifest.csv",
            edit=lambda i, r: {**r, "volume": "gone.npy" if i == 1 else r["volume"]},
        ),
        "empty": _write(root / "empty" / "manifest.csv", ",".join(HEADER) + "\n"),
        "miscased": manifest(
            root / "miscased" / "manifest.csv",
            header=[{"mask": "Mask", "eye": "Eye"}.get(h, h) for h in HEADER],
            edit=lambda i, r: {**r, "Mask": r["mask"], "Eye": r["eye"]},
        ),
        "two_patients": manifest(root / "two_patients" / "manifest.csv", n=2),
        "nan": manifest(root / "nan" / "manifest.csv", edit=nan),
        "mask_values": manifest(root / "maskvalues" / "manifest.csv", edit=values),
        "no_spacing": manifest(root / "no_spacing" / "manifest.csv", header=HEADER[:5]),
        "studyA": manifest(root / "studyA" / "manifest.csv"),
        "studyB": manifest(root / "studyB" / "manifest.csv", n=5),
    }


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_data_check_reports_each_fault_in_one_line(tmp_path, capsys):
    studies = broken_studies(tmp_path / "data")
    assert main(["data", "check", str(tmp_path / "data"), "--pretrain", "faf"]) == 1
    out = capsys.readouterr().out.splitlines()
    errors = [line for line in out if line.startswith("error: ")]
    expected = {
        "missing_column": "missing column 'patient_id' (or 'patient')",
        "duplicate_id": "row 4: duplicate scan id 's0' (first in row 1)",
        "missing_file": "row 2 (scan 's1'): volume file not found: ",
        "empty": "lists no scans (empty dataset)",
        "miscased": "column 'Mask' is not read (column names are case-sensitive); did you mean 'mask'?",
        "two_patients": "2 patient(s); the patient-wise split needs at least 3",
        "nan": "1 NaN and 0 inf voxels",
        "mask_values": "row 3 (scan 's2'): mask",
        "no_spacing": "rows 1, 2, 3 and 1 more: no spacing given",
    }
    for name, text in expected.items():
        hits = [line for line in errors if str(studies[name]) in line and text in line]
        assert len(hits) == 1, (name, errors)
    assert any("column 'Eye' is not read" in line and "did you mean 'eye'?" in line for line in errors)
    assert any(str(studies["miscased"]) in line and "no row has a 'mask' file" in line for line in errors)
    assert any("mask is not binary (values 0, 1, 2" in line for line in errors)
    for name in ("studyA", "studyB"):  # same file name, checked (and reported) apart
        assert f"{studies[name]}: 1 problem(s) (scans " in "\n".join(out)
        faf = [line for line in errors if str(studies[name]) in line]
        assert len(faf) == 1 and "no 'faf' image" in faf[0] and "SSL-FAF pre-training" in faf[0]
    assert main(["data", "check", str(studies["studyA"])]) == 0
    assert f"{studies['studyA']}: ok (scans 4, patients 4, annotated 4)" in capsys.readouterr().out
    assert main(["data", "check", str(studies["empty"]), str(studies["studyB"]), "--json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [len(r["problems"]) for r in reports] == [1, 0] and reports[1]["counts"]["patients"] == 5


def test_find_datasets_lists_the_manifests_of_a_folder_that_is_no_dataset(tmp_path):
    studies = broken_studies(tmp_path / "data")
    assert find_datasets(tmp_path / "data") == sorted(str(p) for p in studies.values())
    assert find_datasets(studies["studyA"].parent) == [str(studies["studyA"].parent)]
    assert find_datasets("synthetic-rpd") == ["synthetic-rpd"]


def test_a_registered_dataset_is_checked_by_loading_it(tmp_path):
    report = check_dataset("synthetic-rpd", CheckOptions(load_scans=False))
    assert report.ok and report.counts["patients"] == 20
    assert not check_dataset("synthetic-rpdd").ok


def test_reading_a_manifest_refuses_a_missing_column_and_warns_about_a_miscased_one(tmp_path):
    studies = broken_studies(tmp_path / "data")
    with pytest.raises(DataError, match="missing column 'patient_id'"):
        load_dataset(str(studies["missing_column"]))
    with pytest.warns(DataWarning) as caught:
        load_dataset(str(studies["miscased"]))
    said = sorted(str(w.message).split(": ", 1)[1] for w in caught)
    assert said == [
        "column 'Eye' is not read (column names are case-sensitive); did you mean 'eye'?",
        "column 'Mask' is not read (column names are case-sensitive); did you mean 'mask'?",
    ]


def test_data_split_refuses_two_patients_saying_how_many_are_needed(tmp_path, capsys):
    path = manifest(tmp_path / "two" / "manifest.csv", n=2)
    assert main(["data", "split", str(path), "--out", str(tmp_path / "split.json")]) == 2
    assert "needs at least 3" in capsys.readouterr().err and not (tmp_path / "split.json").exists()


def test_warnings_on_the_command_line_are_one_line_without_source(tmp_path):
    assert (
        one_line_warning(DataWarning("a\nb"), DataWarning, "f.py", 3, "x") == "warning (DataWarning): a b\n"
    )
    path = broken_studies(tmp_path / "d")["miscased"]
    cmd = [sys.executable, "-m", "bench3d2d", "data", "info", str(path), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("warning (DataWarning): ") for line in lines)
    assert "column 'Mask'" in done.stderr and "warnings.warn" not in done.stderr


def test_train_on_two_patients_stops_before_preparing_saying_how_many_are_needed(tmp_path, capsys):
    path = manifest(tmp_path / "two" / "manifest.csv", n=2)
    cache = tmp_path / "cache"
    args = ["train", "--model", "fpbnet", "--dataset", str(path), "--profile", "smoke", "--quiet",
            "--out", str(tmp_path / "run"), "--cache-dir", str(cache), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "2 patient(s); the patient-wise split needs at least 3" in capsys.readouterr().err
    assert not any(cache.glob("*/*"))  # nothing was prepared
