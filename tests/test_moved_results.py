"""A results folder moved (or mounted at another path) resumes an interrupted SSL fine-tuning run
(issue 22b). The real engine with the tiny model and profile of tests/_sweep_tiny.py, on a tiny
manifest with SLO images that is both the training and the pre-training dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _manifests import HEADER, manifest

from bench3d2d.cli import main
from bench3d2d.harness.sweep import ResultsStore


@pytest.fixture
def tiny(monkeypatch):
    import _sweep_tiny

    _sweep_tiny.install()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    monkeypatch.setenv("BENCH3D2D_THREADS", "1")
    yield _sweep_tiny
    _sweep_tiny.uninstall()


def with_slo(root):
    """A 5-patient manifest whose scans have SLO images."""

    def edit(i, row):
        np.save(root / f"slo{i}.npy", np.random.default_rng(i).random((8, 32)).astype(np.float32))
        return {**row, "slo": f"slo{i}.npy"}

    return manifest(root / "manifest.csv", n=5, header=[*HEADER, "slo"], edit=edit)


def test_a_moved_results_folder_resumes_an_interrupted_ssl_run(tmp_path, tiny, capsys):
    study = with_slo(tmp_path / "study")
    args = ["run", "--models", "test_tiny", "--profile", "tiny", "--fractions", "100", "--seeds", "0",
            "--pretrain", "slo", "--datasets", str(study), "--pretrain-source", str(study),
            "--no-progress", "--allow-untuned"]  # fmt: skip
    out = tmp_path / "results"
    assert main([*args, "--out", str(out)]) == 0
    (run,) = (out / "runs").iterdir()
    assert (run / "checkpoints" / "last.pt").is_file()
    for name in ("result.json", "cases.csv"):  # killed while testing, after its fit: checkpoints remain
        (run / name).unlink()
    moved = tmp_path / "elsewhere" / "moved-results"
    moved.parent.mkdir()
    shutil.move(out, moved)
    capsys.readouterr()
    assert main([*args, "--out", str(moved)]) == 0, capsys.readouterr().err
    assert ResultsStore(moved).is_complete(run.name)
    log = (moved / "runs" / run.name / "log.txt").read_text()
    assert "fit already finished in" in log and "ResumeMismatchError" not in log  # resumed, not retrained
