"""Verified artefacts: ``status --verify`` names damaged files, ``--repair`` redoes exactly those runs,
and ``report`` refuses damaged runs unless ``--allow-damaged`` (issue 15, finding 6).

The runs use the real engine with the tiny model and profile of tests/_sweep_tiny.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench3d2d.cli import main
from bench3d2d.harness.sweep import ResultsStore

ARGS = ["--models", "test_tiny", "--profile", "tiny", "--fractions", "100", "--pretrain", "none",
        "--datasets", "rpd", "--seeds", "0", "--no-progress", "--allow-untuned"]  # fmt: skip


@pytest.fixture
def tiny(monkeypatch):
    import _sweep_tiny

    _sweep_tiny.install()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    monkeypatch.setenv("BENCH3D2D_THREADS", "1")
    yield _sweep_tiny
    _sweep_tiny.uninstall()


def test_verify_names_damage_report_refuses_and_repair_restores(tmp_path, tiny, capsys):
    out = tmp_path / "results"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    (run,) = (p for p in (out / "runs").iterdir())
    result = json.loads((run / "result.json").read_text())
    checkpoint = next(p for p in sorted((run / "checkpoints").iterdir()) if p.name.startswith("top_"))
    preds = sorted((run / "predictions").rglob("*.npz"))
    assert f"checkpoints/{checkpoint.name}" in result["artefacts"] and preds
    assert all(f"predictions/{p.parent.name}/{p.name}" in result["artefacts"] for p in preds)
    for p in preds:  # every prediction file records its real case id, which names it
        with np.load(p) as data:
            assert p.stem == str(data["case_id"]) and str(data["test_set"]) == p.parent.name
    original = (run / "cases.csv").read_bytes()
    assert main(["status", str(out), "--verify"]) == 0

    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    lines = original.decode().splitlines(keepends=True)
    (run / "cases.csv").write_text(lines[0] + lines[1].replace(",0.", ",1.", 1) + "".join(lines[2:]))
    capsys.readouterr()
    assert main(["status", str(out), "--verify"]) == 1
    said = capsys.readouterr().out
    assert f"{run.name}: {checkpoint}" in said and f"{run.name}: {run / 'cases.csv'}" in said
    assert ResultsStore(out).is_complete(run.name)  # plain status still says complete; --verify does not

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report), "--no-figures", "--bootstrap", "99"]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and run.name in err and "cases.csv" in err and "--allow-damaged" in err
    assert not report.exists()
    assert main(["report", str(out), "--out", str(report), "--no-figures", "--bootstrap", "99",
                 "--allow-damaged"]) == 0  # fmt: skip
    assert "damaged run(s) reported anyway" in capsys.readouterr().err

    assert main(["status", str(out), "--repair"]) == 0
    assert f"repaired run {run.name}: complete" in capsys.readouterr().out
    assert main(["status", str(out), "--verify"]) == 0
    assert (run / "cases.csv").read_bytes() == original  # the same run again gives the same cases


def test_damaged_prediction_is_named_and_missing_one_too(tmp_path):
    from bench3d2d.results import artefact_checksums, verify_artefacts

    run = tmp_path / "run"
    (run / "predictions" / "ga").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "predictions" / "ga" / "a.npz").write_bytes(b"one")
    (run / "checkpoints" / "top.pt").write_bytes(b"two")
    result = {"artefacts": artefact_checksums(run)}
    assert verify_artefacts(run, result) == []
    (run / "predictions" / "ga" / "a.npz").write_bytes(b"One")
    (run / "checkpoints" / "top.pt").unlink()
    problems = verify_artefacts(run, result)
    assert problems == [f"{run / 'checkpoints' / 'top.pt'}: missing",
                        f"{run / 'predictions' / 'ga' / 'a.npz'}: does not match the checksum in result.json "
                        "(changed or truncated)"]  # fmt: skip
    assert verify_artefacts(run, result, dirs=("predictions",)) == problems[1:]


def test_an_unreadable_result_json_is_damage_that_repair_redoes(tmp_path, tiny, capsys):
    out = tmp_path / "results"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    (run,) = (p for p in (out / "runs").iterdir())
    original = (run / "cases.csv").read_bytes()
    result = run / "result.json"
    result.write_text(result.read_text()[:40])  # truncated: not JSON any more
    capsys.readouterr()
    assert main(["status", str(out), "--verify"]) == 1
    assert f"damaged run {run.name}: {result}: unreadable" in capsys.readouterr().out
    assert main(["status", str(out), "--repair"]) == 0
    assert f"repaired run {run.name}: complete" in capsys.readouterr().out
    assert json.loads(result.read_text())["status"] == "complete"
    assert (run / "cases.csv").read_bytes() == original


def test_a_plain_rerun_warns_about_damaged_runs_and_points_to_repair(tmp_path, tiny, capsys):
    out = tmp_path / "results"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    (run,) = (p for p in (out / "runs").iterdir())
    (run / "cases.csv").write_text("edited\n")
    checkpoint = next(p for p in sorted((run / "checkpoints").iterdir()) if p.name.startswith("top_"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: damaged run {run.name}: {run / 'cases.csv'}" in err and "(and 1 more)" in err
    assert f"`bench3d2d status {out} --repair`" in err


def test_the_quick_check_reads_only_files_changed_after_the_result(tmp_path):
    from bench3d2d.results import verify_artefacts

    (tmp_path / "checkpoints").mkdir()
    ckpt = tmp_path / "checkpoints" / "a.pt"
    ckpt.write_bytes(b"weights")
    os.utime(ckpt, (1000, 1000))
    result = {"artefacts": {"checkpoints/a.pt": "0" * 64}}  # a wrong digest: only reading finds it
    assert verify_artefacts(tmp_path, result, unchanged_before=2000) == []
    assert len(verify_artefacts(tmp_path, result)) == 1
    assert len(verify_artefacts(tmp_path, result, unchanged_before=500)) == 1  # modified since: read
    ckpt.unlink()
    assert verify_artefacts(tmp_path, result, unchanged_before=2000) == [f"{ckpt}: missing"]
