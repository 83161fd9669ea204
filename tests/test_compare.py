"""``bench3d2d compare``: best entries, significance marks, moved means and one-sided entries."""

from __future__ import annotations

import pandas as pd

from bench3d2d.cli import main
from bench3d2d.report.compare import compare_summaries


def _summary(rows):
    cols = ["model", "pretrain", "mean", "is_best", "vs_best"]
    out = pd.DataFrame([dict(zip(cols, r)) for r in rows])
    for key, value in (
        ("train_dataset", "ga"),
        ("test_set", "ga:test"),
        ("fraction", 100.0),
        ("metric", "dice"),
    ):
        out[key] = value
    return out


A = _summary(
    [
        ("fpbnet", "none", 0.90, True, "best"),
        ("ipn", "none", 0.85, False, "†"),
        ("unet", "none", 0.8, False, "n.s."),
    ]
)


def test_identical_summaries_agree():
    result = compare_summaries(A, A.copy())
    assert not result.differs and len(result.matched) == 3


def test_every_kind_of_difference_is_found():
    b = _summary([("fpbnet", "none", 0.86, False, "n.s."), ("ipn", "none", 0.87, True, "best"),
                  ("lachinov", "none", 0.7, False, "†")])  # fmt: skip
    result = compare_summaries(A, b, threshold=0.03)
    assert result.differs
    assert result.best[["best_a", "best_b"]].values.tolist() == [["fpbnet (none)", "ipn (none)"]]
    flips = dict(
        zip(result.significance["model"], zip(result.significance["mark_a"], result.significance["mark_b"]))
    )
    assert flips == {"fpbnet": ("best", "n.s."), "ipn": ("significant", "best")}
    assert result.means["model"].tolist() == ["fpbnet"]  # -0.04; ipn moved +0.02 only
    assert sorted(zip(result.only["model"], result.only["side"])) == [
        ("lachinov", "B only"),
        ("unet", "A only"),
    ]


def test_a_small_move_is_no_difference():
    b = A.copy()
    b["mean"] = b["mean"] + 0.02
    assert not compare_summaries(A, b, threshold=0.03).differs
    assert compare_summaries(A, b, threshold=0.01).differs


def test_the_command_exits_1_when_a_verdict_differs(tmp_path, capsys):
    for name, table in (("a", A), ("b", A.assign(mean=A["mean"] - 0.05))):
        (tmp_path / name).mkdir()
        table.to_csv(tmp_path / name / "summary.csv", index=False)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert "verdicts agree" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "entries whose mean Dice moves by more than 0.03: 3" in capsys.readouterr().out
