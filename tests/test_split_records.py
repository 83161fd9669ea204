"""Per-dataset split records keyed by the dataset's identity (issue 22b).

Two studies whose manifests share a file name never share a record; a dataset that changed gets a
new record, so ``--rerun-changed`` after patients were added completes; a mismatch is found before
a run trains. The runs use the real engine with the tiny model and profile of tests/_sweep_tiny.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench3d2d.cli import main
from bench3d2d.data import load_dataset
from bench3d2d.harness._splits import SplitMismatchError, check_split, expected_split, split_record_path
from bench3d2d.harness.sweep import PlanOptions, ResultsStore

H, W, D = 8, 32, 16
ARGS = ["--models", "test_tiny", "--profile", "tiny", "--fractions", "100", "--pretrain", "none",
        "--seeds", "0", "--no-progress", "--allow-untuned"]  # fmt: skip


@pytest.fixture
def tiny(monkeypatch):
    import _sweep_tiny

    _sweep_tiny.install()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    monkeypatch.setenv("BENCH3D2D_THREADS", "1")
    yield _sweep_tiny
    _sweep_tiny.uninstall()


def add_scan(root: Path, i: int, seed: int = 0) -> str:
    """Write one scan's volume and mask; return its manifest row."""
    rng = np.random.default_rng(seed * 100 + i)
    np.save(root / f"v{i}.npy", rng.random((H, W, D)).astype(np.float32))
    mask = np.zeros((H, W), np.float32)
    mask[2:6, 8:20] = 1
    np.save(root / f"m{i}.npy", mask)
    return f"s{i},p{i},OD,v{i}.npy,m{i}.npy,0.1,0.01,0.005"


def study(root: Path, n: int = 4, seed: int = 0) -> Path:
    """``root/manifest.csv`` with ``n`` scans of ``n`` patients."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["scan_id,patient_id,eye,volume,mask,spacing_h,spacing_w,spacing_d"]
    rows += [add_scan(root, i, seed) for i in range(n)]
    path = root / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_two_studies_whose_manifests_share_a_name_get_their_own_records(tmp_path, tiny):
    a, b = study(tmp_path / "studyA", 4), study(tmp_path / "studyB", 5, seed=1)
    out = tmp_path / "results"
    assert main(["run", *ARGS, "--datasets", f"{a},{b}", "--out", str(out)]) == 0
    records = sorted((out / "splits").glob("*.json"))
    assert [p.name.split("-")[:2] for p in records] == [["studyA", "manifest"], ["studyB", "manifest"]]
    counts = sorted(sum(json.loads(p.read_text())["counts"].values()) for p in records)
    assert counts == [4, 5]


def test_rerun_changed_after_a_patient_was_added_completes_every_run(tmp_path, tiny, capsys):
    manifest = study(tmp_path / "study", 4)
    out = tmp_path / "results"
    args = ["run", *ARGS, "--datasets", str(manifest), "--out", str(out)]
    assert main(args) == 0
    with manifest.open("a") as fh:
        fh.write(add_scan(manifest.parent, 4) + "\n")
    assert main(args) == 2  # changed data: refused without --rerun-changed
    capsys.readouterr()
    assert main([*args, "--rerun-changed"]) == 0, capsys.readouterr().err
    assert len(list((out / "splits").glob("*.json"))) == 2  # the old split is kept, the new one added
    (run,) = (out / "runs").iterdir()
    assert ResultsStore(out).is_complete(run.name)
    assert main([*args, "--retry-failed"]) == 0


def test_a_split_mismatch_is_found_from_the_headers_before_training(tmp_path):
    ds = load_dataset(str(study(tmp_path / "study", 4)))
    store = ResultsStore(tmp_path / "results")
    split = expected_split(ds, "study", 0)
    path = split_record_path(store, "study", split["fingerprint"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**split, "train": split["test"], "test": split["train"]}))
    with pytest.raises(SplitMismatchError, match="nothing was trained"):
        check_split(path, split)
    other = split_record_path(store, "study", "another fingerprint")
    assert other != path and other.parent == path.parent


def test_too_few_patients_for_a_split_says_how_many_are_needed(tmp_path):
    ds = load_dataset(str(study(tmp_path / "study", 2)))
    with pytest.raises(ValueError, match=r"2 patient.*needs at least 3"):
        expected_split(ds, "study", 0)


def test_a_relative_pretrain_source_is_resolved_like_a_dataset_path(tmp_path, monkeypatch):
    from bench3d2d.harness.sweep import expand_plan

    study(tmp_path / "study", 4)
    monkeypatch.chdir(tmp_path)
    plan = expand_plan("fpbnet", "100", "study/manifest.csv", "slo", "0", "smoke",
                       PlanOptions(pretrain_source="study/manifest.csv"))  # fmt: skip
    (pre,) = plan.pretrainings
    assert pre.source == str((tmp_path / "study" / "manifest.csv").resolve()) == plan.runs[0].train_dataset
