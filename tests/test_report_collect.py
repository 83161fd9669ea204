"""Reading results folders: statuses, and bad files named in warnings instead of silently dropped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from report_fabric import CASE_COLUMNS, fabricate, write_run

from bench3d2d.report.collect import collect, read_prediction

ENTRIES = (("fpbnet", "none"), ("ipn", "none"))


@pytest.fixture
def results(tmp_path):
    return fabricate(
        tmp_path / "results", entries=ENTRIES, fractions=(100,), seeds=(0,), n_cases=6, predictions=1
    )


def _run_dirs(root):
    return sorted(p for p in (root / "runs").iterdir() if p.is_dir())


def test_clean_folder_reads_every_row(results):
    coll = collect(results)
    assert coll.warnings == []
    assert [r.status for r in coll.runs] == ["complete", "complete"]
    # 2 runs x 6 cases x 4 metrics, typed, with the run id
    assert len(coll.cases) == 48
    assert list(coll.cases.columns) == [*CASE_COLUMNS, "run_id"]
    assert coll.cases["fraction"].dtype == float and coll.cases["seed"].dtype == np.int64
    assert set(coll.cases["pretrain"]) == {"none"}  # "none" is a value, not a missing field
    assert coll.cases["value"].isna().sum() == 2  # HD95 of the last case of each run: NaN kept


def test_failed_and_incomplete_runs_are_listed_not_dropped(results):
    spec = {
        "model": "lachinov",
        "train_dataset": "synth-ga",
        "fraction": 100.0,
        "seed": 0,
        "pretrain": "none",
    }
    write_run(
        results,
        spec,
        status="failed",
        error={"type": "RuntimeError", "message": "CUDA out of memory", "traceback": "..."},
    )
    write_run(results, {**spec, "model": "ipnv2"}, status="running")  # spec.json and log.txt
    write_run(results, {**spec, "model": "resensnet"}, status="pending")  # spec.json only
    coll = collect(results)
    table = coll.runs_table().set_index("model")
    assert table.loc["lachinov", "status"] == "failed"
    assert "RuntimeError: CUDA out of memory" in table.loc["lachinov", "error"]
    assert table.loc["ipnv2", "status"] == "incomplete"
    assert table.loc["resensnet", "status"] == "pending"
    assert any("1 run(s) failed" in w for w in coll.warnings)
    assert any("1 run(s) incomplete" in w for w in coll.warnings)
    assert any("1 run(s) pending" in w for w in coll.warnings)
    assert len(coll.cases) == 48


def test_truncated_cases_file_keeps_good_rows_and_names_the_file_and_line(results):
    run = _run_dirs(results)[0]
    text = (run / "cases.csv").read_text()
    cut = text[: text.rindex("\n", 0, len(text) - 1) - 20]  # cut in the middle of the last-but-one row
    (run / "cases.csv").write_text(cut)
    coll = collect(results)
    n_lines = cut.count("\n") + 1
    problem = [w for w in coll.warnings if f"runs/{run.name}/cases.csv" in w]
    assert problem, coll.warnings
    assert "does not match the checksum in result.json" in problem[0]
    assert f"line(s) {n_lines}: fewer fields than columns (truncated file?)" in problem[1]
    assert len(coll.cases) == 48 - 2  # the cut row and the missing last row
    assert (coll.runs_table().set_index("run_id").loc[run.name, "rows"]) == 24 - 2


def test_foreign_or_truncated_result_files_make_the_run_invalid_with_a_warning(results):
    first, second = _run_dirs(results)
    (first / "result.json").write_text('{"status": "compl')  # truncated JSON
    (second / "result.json").write_text(json.dumps({"accuracy": 0.9}))  # someone else's file
    coll = collect(results)
    statuses = dict(zip(coll.runs_table()["run_id"], coll.runs_table()["status"]))
    assert statuses == {first.name: "invalid", second.name: "invalid"}
    assert any(f"runs/{first.name}/result.json: not valid JSON" in w for w in coll.warnings)
    assert any(f"runs/{second.name}/result.json: status is None" in w for w in coll.warnings)
    assert any("2 run(s) invalid, not in the tables" in w for w in coll.warnings)
    assert coll.cases.empty


def test_foreign_cases_file_is_named_with_its_missing_columns(results):
    run = _run_dirs(results)[0]
    pd.DataFrame({"patient": ["a"], "score": [1.0]}).to_csv(run / "cases.csv", index=False)
    coll = collect(results)
    msg = next(w for w in coll.warnings if f"runs/{run.name}/cases.csv: not a per-case table" in w)
    assert "column(s) train_dataset" in msg and "found: patient, score" in msg
    assert not any("checksum" in w for w in coll.warnings)  # unreadable: no talk of rows being used
    assert coll.runs_table().set_index("run_id").loc[run.name, "status"] == "invalid"
    assert len(coll.cases) == 24


def test_bad_values_are_named_by_line(results):
    run = _run_dirs(results)[0]
    df = pd.read_csv(run / "cases.csv", dtype=str, keep_default_na=False)
    df.loc[3, "value"] = "oops"
    df.loc[5, "fraction"] = "ten"
    df.loc[7, "value"] = ""  # empty value: a NaN metric, not an error
    df.to_csv(run / "cases.csv", index=False)
    coll = collect(results)
    text = " | ".join(coll.warnings)
    assert "line(s) 5: value is not a number" in text
    assert "line(s) 7: fraction is not a number" in text
    assert len(coll.cases) == 48 - 2


def test_spec_mismatch_and_duplicates_are_reported(results):
    run = _run_dirs(results)[0]
    spec = json.loads((run / "spec.json").read_text())
    (run / "spec.json").write_text(json.dumps({**spec, "model": "other"}))
    copy = results / "runs" / "copy_of_run"
    copy.mkdir()
    for name in ("spec.json", "cases.csv", "result.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    (results / "runs" / "notes.txt").write_text("hello")
    coll = collect(results)
    text = " | ".join(coll.warnings)
    assert "differs from spec.json" in text
    assert "appear more than once" in text and "copy_of_run" in text
    assert "runs/notes.txt: not a run folder" in text


def test_per_case_table_and_missing_folder(tmp_path, results):
    coll = collect(results)
    coll.cases.drop(columns="run_id").to_csv(tmp_path / "cases.csv", index=False)
    again = collect(tmp_path / "cases.csv")
    assert len(again.cases) == 48 and again.runs == [] and again.warnings == []
    assert again.cases["value"].isna().sum() == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        collect(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'runs/' folder"):
        collect(tmp_path / "empty")


def test_per_case_parquet_table(tmp_path, results):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Parquet is optional)")
    coll = collect(results)
    coll.cases.drop(columns="run_id").to_parquet(tmp_path / "cases.parquet")
    from_parquet = collect(tmp_path / "cases.parquet")
    assert from_parquet.warnings == [] and from_parquet.cases["value"].isna().sum() == 2  # NaN kept
    pd.testing.assert_frame_equal(
        from_parquet.cases.drop(columns="run_id"), coll.cases.drop(columns="run_id")
    )


def test_read_prediction_checks_the_file(results, tmp_path):
    coll = collect(results)
    run = coll.runs[0]
    path = coll.prediction_path(run.run_id, "synth-ga:test", "case00")
    assert path == run.path / "predictions" / "synth-ga_test" / "case00.npz"  # the harness's file name
    pred = read_prediction(path)
    assert pred.pred.dtype == bool and pred.mask.shape == pred.prob.shape and pred.background is not None
    assert coll.prediction_path(run.run_id, "synth-ga:test", "case05") is None
    raw = run.path / "predictions" / "synth-ga:test"
    raw.mkdir()
    (raw / "case05.npz").write_bytes(path.read_bytes())
    assert coll.prediction_path(run.run_id, "synth-ga:test", "case05") == raw / "case05.npz"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"bad\.npz: cannot be read"):
        read_prediction(bad)
    np.savez(tmp_path / "partial.npz", prob=np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"partial.npz: key\(s\) pred, mask missing"):
        read_prediction(tmp_path / "partial.npz")
    np.savez(tmp_path / "shape.npz", prob=np.zeros((4, 4)), pred=np.zeros((4, 5)), mask=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="'pred' has shape"):
        read_prediction(tmp_path / "shape.npz")
