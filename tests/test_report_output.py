"""``bench3d2d report`` end to end: files, escaping, failed runs, bad files, the HTML page in Chromium."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from report_browser import Page, find_chromium
from report_fabric import fabricate, write_run

from bench3d2d.cli import main
from bench3d2d.report.collect import collect

# Names from users and plugins, hostile to every output format.
EVIL_MODEL = '<img src=x onerror="console.error(1)">|*x*_&%$#{}$\\bad$'
EVIL_TEST = "ext</script><script>console.error('x')</script>&50%"
ENTRIES = (("fpbnet", "none"), ("fpbnet", "slo"), (EVIL_MODEL, "none"))
EFFECTS = {("fpbnet", "none"): 0.12, ("fpbnet", "slo"): 0.0, (EVIL_MODEL, "none"): -0.01}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A results folder with a failed run, an incomplete run and a truncated case file; its report."""
    tmp = tmp_path_factory.mktemp("report")
    root = fabricate(
        tmp / "results",
        entries=ENTRIES,
        effects=EFFECTS,
        test_sets=("synth-ga:test", EVIL_TEST),
        fractions=(20, 100),
        seeds=(0,),
        n_cases=8,
        predictions=2,
    )
    spec = {"model": "ipn", "train_dataset": "synth-ga", "fraction": 20.0, "seed": 0, "pretrain": "none"}
    failed = write_run(
        root,
        spec,
        status="failed",
        error={"type": "MemoryError", "message": "<out of memory>", "traceback": "..."},
    )
    pending = write_run(root, {**spec, "fraction": 100.0}, status="running")
    victim = next(p for p in sorted((root / "runs").iterdir()) if p not in (failed, pending))
    text = (victim / "cases.csv").read_text()
    (victim / "cases.csv").write_text(text[: len(text) - 25])  # truncated in the last row
    out = tmp / "board"
    code = main(
        [
            "report",
            str(root),
            "--out",
            str(out),
            "--bootstrap",
            "300",
            "--overlay-cases",
            "2",
            "--allow-damaged",
        ]
    )  # the truncated cases.csv: report it with a warning
    return {
        "root": root,
        "out": out,
        "code": code,
        "failed": failed.name,
        "pending": pending.name,
        "victim": victim.name,
    }


def test_cli_writes_every_output(built):
    out = built["out"]
    assert built["code"] == 0
    for name in (
        "README.md",
        "index.html",
        "leaderboard.tex",
        "cases.csv",
        "summary.csv",
        "pairwise.csv",
        "friedman.csv",
        "ranks.csv",
        "claims.csv",
        "cost.csv",
        "runs.csv",
        "report.json",
    ):
        assert (out / name).is_file(), name
    # the per-case data once, in one format
    assert not (out / "cases.parquet").exists() and not (out / "case_means.csv").exists()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert sum(n.startswith("fractions_") for n in figures) == 1
    assert sum(n.startswith("cd_") for n in figures) == 8  # 2 test sets x 2 fractions x 2 metrics
    assert sum(n.startswith("overlay_") for n in figures) == 4
    # 8 patients < SMALL_N: no ranking-stability figure, and the board says why
    assert sum(n.startswith("ranks_") for n in figures) == 0
    md = (out / "README.md").read_text()
    assert "Ranking stability: not shown: 8 patients, fewer than 10" in md
    assert "95 % CI: Student-t interval of the mean of the 8 patients" in md
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob("*.tmp"))


def test_case_table_keeps_names_and_every_value_and_reads_back(built):
    out = built["out"]
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False, na_values=[""])
    assert list(cases.columns)[:9] == [
        "train_dataset",
        "test_set",
        "fraction",
        "model",
        "pretrain",
        "seed",
        "case_id",
        "patient_id",
        "run_id",
    ]
    assert {"dice", "area_diff_mm2", "hd95_mm", "area_diff_signed_mm2"} <= set(cases.columns)
    assert EVIL_MODEL in set(cases["model"]) and EVIL_TEST in set(cases["test_set"])
    # 6 complete runs x 2 test sets x 8 cases, one row each; the truncated last row lost one value
    assert len(cases) == 6 * 2 * 8
    metrics = ["dice", "area_diff_mm2", "hd95_mm", "area_diff_signed_mm2"]
    assert int(cases[metrics].notna().sum().sum()) == 6 * 2 * 8 * 4 - 1 - 6 * 2  # and one HD95 NaN per run
    # the board's table is an input of `bench3d2d report`: the same long table comes back
    again = collect(out / "cases.csv").cases
    original = collect(built["root"]).cases
    key = ["train_dataset", "test_set", "fraction", "model", "pretrain", "seed", "case_id", "metric"]
    a = again.dropna(subset=["value"]).sort_values(key).reset_index(drop=True)
    b = original.dropna(subset=["value"]).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[[*key, "patient_id", "value"]], b[[*key, "patient_id", "value"]])


def test_failed_runs_and_bad_files_are_reported(built, capsys):
    out = built["out"]
    md = (out / "README.md").read_text()
    assert built["failed"] in md and "MemoryError: &lt;out of memory&gt;" in md
    assert built["pending"] in md and "incomplete" in md
    # the boards these runs belong to say that an entry is missing
    assert md.count(f"ipn (scratch), seed 0: failed (run {built['failed']})") == 2  # 20 %: both test sets
    assert md.count(f"ipn (scratch), seed 0: incomplete (run {built['pending']})") == 2  # 100 %
    assert f"runs/{built['victim']}/cases.csv" in md.replace("\\", "")
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert runs.loc[built["failed"], "status"] == "failed"
    assert runs.loc[built["pending"], "status"] == "incomplete"
    doc = json.loads(
        (out / "report.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"),
    )
    assert any(f"runs/{built['victim']}/cases.csv" in w for w in doc["warnings"])
    assert doc["settings"]["scipy"]


def test_markdown_board_order_marker_and_escaping(built):
    md = (built["out"] / "README.md").read_text()
    assert "<img" not in md and "<script" not in md and "</script" not in md
    assert "&lt;img src=x" in md
    section = md[md.index("### synth-ga:test · 20 %") :]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:5]
    assert rows[0].startswith("| 1 | fpbnet | scratch |") and "**" in rows[0]
    assert all("†" in r for r in rows[1:])
    lines = md.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| # | Model |")))
    cells = len(re.findall(r"(?<!\\)\|", lines[header]))
    evil_rows = [line for line in lines if line.startswith("| ") and "img src" in line]
    assert len(evil_rows) >= 4
    for line in evil_rows:  # the pipe inside the name is escaped: it does not split the cell
        assert "\\|" in line
        if line.startswith("| 3 |"):
            assert len(re.findall(r"(?<!\\)\|", line)) == cells


def test_latex_escapes_names(built):
    tex = (built["out"] / "leaderboard.tex").read_text()
    assert r"\textless{}img src=x" in tex and r"\&\%\$\#\{\}" in tex
    assert r"\begin{tabular}" in tex and r"$^\dagger$" in tex and r"\textbf{" in tex
    body = re.sub(r"\\[&%$#{}_]", "", tex)
    for line in body.splitlines():
        if "img src" in line:
            assert line.count("&") == 4  # 5 columns: labels, model, pre-training, 2 metrics


def test_strict_mode_and_reproducible_tables(built, tmp_path):
    args = [
        "report",
        str(built["root"]),
        "--out",
        str(tmp_path / "a"),
        "--bootstrap",
        "300",
        "--no-figures",
        "--formats",
        "md",
        "csv",
        "--allow-damaged",
    ]
    assert main([*args, "--strict"]) == 1
    assert main(args) == 0
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (built["out"] / "summary.csv").read_bytes()
    assert not (tmp_path / "a" / "index.html").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "results not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o"), "--formats", "pdf"]) == 2
    assert "unknown report format" in capsys.readouterr().err


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found (install Debian's `chromium`, as .ci/run does, or set BENCH3D2D_CHROMIUM)",
)


@needs_chromium
def test_html_page_in_headless_chromium(built):
    out = built["out"]
    with Page(CHROMIUM) as page:
        page.open(out / "index.html")
        assert page.errors() == []
        n_tables = page.evaluate("document.querySelectorAll('table.board').length")
        assert n_tables == 4  # 2 test sets x 2 fractions
        assert page.evaluate("document.documentElement.getAttribute('data-sortable-ready')") == str(
            page.evaluate("document.querySelectorAll('table.sortable').length")
        )
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])"
        )
        # curves, CD diagrams, overlays; no ranking-stability figure: fewer than 10 patients per section
        assert len(images) == 1 + 8 + 4
        assert all(ok and width > 0 and src == "data:image/png;base64," for ok, width, src in images)
        # names are text, never markup
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert EVIL_MODEL in page.evaluate("document.body.innerText")
        assert EVIL_TEST in page.evaluate("document.body.innerText")
        assert page.evaluate("document.querySelectorAll('script').length") == 1
        # sorting: click "mean ± sd" (Dice) of the first board -> ascending, worst entry first
        first_model = "document.querySelector('table.board tbody tr td:nth-child(2)').textContent"
        assert page.evaluate(first_model) == "fpbnet"
        page.evaluate("document.querySelector('table.board thead tr:last-child th:nth-child(7)').click()")
        assert page.evaluate(first_model) != "fpbnet"
        page.evaluate("document.querySelector('table.board thead tr:last-child th:nth-child(7)').click()")
        assert page.evaluate(first_model) == "fpbnet"
        assert page.errors() == []


@needs_chromium
def test_chromium_check_catches_broken_pages(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><img src='missing.png'>"
        "<script>console.error('boom'); notAFunction();</script></body></html>"
    )
    with Page(CHROMIUM) as page:
        page.open(bad)
        errors = page.errors()
    assert any("console.error: boom" in e for e in errors)
    assert any("notAFunction" in e for e in errors)
    assert any("missing.png" in e for e in errors)


def test_no_nan_text_in_boards(built):
    md = (built["out"] / "README.md").read_text()
    assert not re.search(r"\bnan\b", md)
    assert math.isfinite(float(pd.read_csv(built["out"] / "summary.csv")["mean"].dropna().iloc[0]))


def test_a_folder_where_every_run_failed_still_gives_a_report(tmp_path):
    spec = {"model": "ipn", "train_dataset": "synth-ga", "fraction": 5.0, "seed": 0, "pretrain": "none"}
    failed = write_run(
        tmp_path / "results",
        spec,
        status="failed",
        error={"type": "ValueError", "message": "bad volume", "traceback": "..."},
    )
    out = tmp_path / "board"
    assert main(["report", str(tmp_path / "results"), "--out", str(out), "--bootstrap", "100"]) == 0
    md = (out / "README.md").read_text()
    assert "No per-case results to rank." in md
    assert f"| {failed.name} | failed | ipn |" in md and "ValueError: bad volume" in md
    assert failed.name in (out / "index.html").read_text()
    assert pd.read_csv(out / "runs.csv")["status"].tolist() == ["failed"]


def test_markdown_overview_lists_every_entry_at_every_fraction(built):
    md = (built["out"] / "README.md").read_text()
    overview = md[md.index("## Overview") : md.index("## Trained on")]
    block = overview[overview.index("tested on synth-ga:test") :]
    lines = [line for line in block.splitlines() if line.startswith("| ")]
    assert lines[0] == "| Model | Pre-training | 20 % | 100 % |"
    rows = {tuple(c.strip() for c in line.split(" | ")[:2]): line for line in lines[2:5]}
    scratch, slo = rows[("| fpbnet", "scratch")], rows[("| fpbnet", "SSL-SLO")]
    assert scratch.count("**") == 4 and "†" not in scratch  # best at both fractions
    assert slo.count("†") == 2 and "**" not in slo
    # the overview's number is the full table's mean
    section = md[md.index("### synth-ga:test · 20 %") :]
    full = next(line for line in section.splitlines() if line.startswith("| 1 | fpbnet | scratch |"))
    mean = full.split(" | ")[6].strip("* ").split(" ± ")[0]
    assert scratch.split(" | ")[2] == f"**{mean}**"
    assert md.index("## Overview") < md.index("## Trained on")
