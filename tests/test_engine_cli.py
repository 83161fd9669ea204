"""``bench3d2d train`` / ``pretrain`` end to end on the synthetic data, shrunk to a few steps."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench3d2d.cli import main
from bench3d2d.engine import CASE_COLUMNS

SHRINK = [
    "--profile",
    "smoke",
    "--hparam",
    "rounds=1",
    "--hparam",
    "steps_per_round=2",
    "--hparam",
    "top_k=1",
    "--threads",
    "1",
]


@pytest.mark.slow
def test_train_cli_writes_the_run_folder_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "fpbnet",
        "--dataset",
        "synthetic-rpd",
        "--fraction",
        "20",
        "--seed",
        "1",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--quiet",
        *SHRINK,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "synthetic-rpd" in printed and "dice" in printed and "hd95_mm" in printed
    cases = pd.read_csv(out / "cases.csv")
    assert list(cases.columns) == list(CASE_COLUMNS)
    assert set(cases["metric"]) >= {"dice", "area_diff_mm2", "precision", "recall", "hd95_mm"}
    assert (cases["fraction"] == 20).all() and (cases["pretrain"] == "none").all()
    split = json.loads((out / "split.json").read_text())
    assert split["fraction"] == 20 and split["n_label_patients"] >= 1
    assert set(split["label_patients"]) <= set(split["train"])
    assert (out / "log.txt").read_text().count("test synthetic-rpd") == 1
    assert list((out / "predictions" / "synthetic-rpd").glob("*.npz"))
    # the same command again resumes from the finished state and gives the same table
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "cases.csv"), cases)


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = main(
        [
            "train",
            "--model",
            "no-such-net",
            "--dataset",
            "synthetic-rpd",
            "--out",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "unknown model 'no-such-net'" in capsys.readouterr().err
    code = main(
        [
            "train",
            "--model",
            "fpbnet",
            "--dataset",
            "synthetic-rpd",
            "--out",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
            "--hparam",
            "learning_rate=1",
        ]
    )
    assert code == 2
    assert "unknown hyper-parameter" in capsys.readouterr().err
