"""Markdown for GitHub (``README.md``, so that GitHub shows it when the folder is opened)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench3d2d._io import atomic_write_text
from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import claim_summary, claims_intro
from bench3d2d.report.collect import STATUSES
from bench3d2d.report.view import (
    FAILED_FIT_MARKER,
    FAILED_FIT_TEXT,
    WORSE_MARKER,
    Cell,
    Overview,
    Section,
    build_overviews,
    fmt_fraction,
    fmt_p,
    fmt_value,
    metric_header,
    settings_lines,
    training_conditions,
    unit_sentence,
)

if TYPE_CHECKING:
    from bench3d2d.report.model import Report

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~$])")
_MD_LEADING = re.compile(r"^([#+\-=!])")
_MD_NUMBERED = re.compile(r"^(\d+)([.)])")


def md_escape(text: object) -> str:
    """Text from users (names) made inert in GitHub Markdown: HTML entities, escaped punctuation, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = re.sub(r"\s+", " ", s).strip()
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _MD_NUMBERED.sub(r"\1\\\2", s)
    return _MD_LEADING.sub(r"\\\1", s)


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _board(section: Section) -> list[str]:
    header = ["#", "Model", "Pre-training", "scans", "seeds", "failures"]
    align = ["r", "l", "l", "r", "r", "r"]
    for m in section.metrics:
        header += [f"{metric_header(m)} mean ± sd", "seed sd [min, max]", "median", "95 % CI", "mean rank"]
        align += ["r", "r", "r", "c", "r"]
        if section.reachable.get(m, True):
            header += ["p (Holm)", "Δ vs best (HL [unadjusted CI])"]
            align += ["r", "r"]
    rows = []
    position = 0
    for r in section.rows:
        position += not r.failed_fit  # a failed fit is listed, not ranked
        model = md_escape(r.model) + (f" **{r.failed_fit}**" if r.failed_fit else "")
        cells = [
            FAILED_FIT_MARKER if r.failed_fit else str(position),
            model,
            md_escape(r.pretrain_label),
            str(r.n),
            r.seeds,
            r.failures,
        ]
        for m in section.metrics:
            reach = section.reachable.get(m, True)
            c = r.cells.get(m)
            if c is None:
                cells += ["–"] * (7 if reach else 5)
                continue
            mean = _marked(c.mean_std, c)
            nan = f" ({c.n_nan} NaN)" if c.n_nan else ""
            cells += [mean + nan, c.seeds, c.median, c.ci, c.rank]
            if reach:
                cells += [c.p_holm, c.effect]
        rows.append(cells)
    return _table(header, rows, align)


def _claims(report: Report) -> list[str]:
    claims = report.claims
    if claims is None or claims.empty:
        return []
    unit = "scan" if report.leaderboard.settings.get("unit") == "case" else "patient"
    lines = [
        "## Claims check",
        "",
        md_escape(claims_intro(report.options.alpha, unit))
        + " [How claims are checked](#how-these-numbers-were-made).",
        "",
    ]
    lines += [f"- {md_escape(text)}: {counts}." for text, counts in claim_summary(claims)] + [""]
    rows = []
    for _, c in claims.iterrows():
        fraction = "" if pd.isna(c["fraction"]) else f" · {c['fraction']:g} %"
        where = f"{md_escape(c['train_dataset'])} → {md_escape(c['test_set'])}{fraction}"
        p_holm = "–" if pd.isna(c["p_holm"]) else f"{c['p_holm']:.3g}"
        why = f" ({md_escape(c['why'])})" if isinstance(c["why"], str) and c["why"] else ""
        rows.append(
            [
                md_escape(c["text"]),
                where,
                md_escape(c["numbers"]),
                md_escape(c["test"]),
                p_holm,
                f"**{c['verdict']}**{why}",
            ]
        )
    return [*lines, *_table(["Claim", "Where", "Numbers", "Test", "p (Holm, claim)", "Verdict"], rows), ""]


def _cost(report: Report, train: str) -> list[str]:
    cost = report.cost
    if cost is None or cost.empty:
        return []
    c = cost[cost["train_dataset"] == train]
    if c.empty:
        return []
    fractions = sorted(c["fraction"].dropna().unique())
    header = [
        "Model",
        "Pre-training",
        "parameters",
        *(f"fine-tuning s/run, {fmt_fraction(f)}" for f in fractions),
        "process peak RSS (MB)",
    ]
    rows = []
    for (model, pre), g in c.groupby(["model", "pretrain"], sort=True):
        times = {f: t for f, t in zip(g["fraction"], g["fit_s"])}
        params = g["parameters"].dropna()
        peak = g["peak_memory_mb"].dropna()
        rows.append(
            [
                md_escape(model),
                md_escape(stats.pretrain_label(pre)),
                f"{int(params.iloc[0]):,}" if len(params) else "–",
                *(f"{times[f]:.0f}" if f in times and times[f] == times[f] else "–" for f in fractions),
                f"{peak.max():.0f}" if len(peak) else "not recorded",
            ]
        )
    lines = [
        "**Cost** (mean over the runs of each entry; from each run's result.json). Parameters are the "
        "model's own size; the peak memory is the whole process's peak resident memory during the run "
        "(Python, PyTorch, data and caches included), not the model's:",
        "",
        *_table(header, rows, ["l", "l", "r", *(["r"] * len(fractions)), "r"]),
        "",
    ]
    if train in report.cost_figures:
        lines += [f"![Accuracy against cost]({report.cost_figures[train]})", ""]
    return lines


def _marked(text: str, cell: Cell) -> str:
    """A cell's number in bold when it is the best, else followed by its significance marker."""
    return f"**{text}**" if cell.is_best else text + (f" {cell.marker}" if cell.marker else "")


def _overview_text(metric: str, cell: Cell | None) -> str:
    """An overview cell: the marked mean; ``failed fit`` when every seed failed, ``✗`` after a mean
    when some did."""
    if cell is None:
        return "–"
    if cell.all_failed:
        return FAILED_FIT_TEXT
    mark = f" {FAILED_FIT_MARKER}" if cell.failed_seeds else ""
    return _marked(fmt_value(metric, cell.mean), cell) + mark


def failed_fits_lines(section: Section) -> list[str]:
    """The section's "Failed fits" list (empty when no entry has one)."""
    if not section.failed_fits:
        return []
    return [
        f"**Failed fits** ({FAILED_FIT_MARKER}: a seed that predicted no lesion on any test scan of "
        f"{md_escape(section.test_set)}, which has lesions; never best and not ranked, counted with "
        "its real values, Dice 0, in every test): "
        + "; ".join(md_escape(t) for t in section.failed_fits)
        + ".",
        "",
    ]


def _overview(ov: Overview) -> list[str]:
    header = ["Model", "Pre-training", *(fmt_fraction(f) for f in ov.fractions)]
    rows = []
    for row, cells in ov.rows:
        texts = [_overview_text(ov.metric, c) for c in cells]
        rows.append([md_escape(row.model), md_escape(row.pretrain_label), *texts])
    return _table(header, rows, ["l", "l", *(["r"] * len(ov.fractions))])


def _others(section: Section) -> list[str]:
    if not section.other_metrics:
        return []
    header = ["Model", "Pre-training"] + [metric_header(m) + " mean ± sd" for m in section.other_metrics]
    rows = []
    for r in section.rows:
        cells = [md_escape(r.model), md_escape(r.pretrain_label)]
        for m in section.other_metrics:
            c = r.cells.get(m)
            if c is None:
                cells.append("–")
                continue
            text = f"**{c.mean_std}**" if c.is_best else c.mean_std + (f" {c.marker}" if c.marker else "")
            cells.append(text + (f" ({c.n_nan} NaN)" if c.n_nan else ""))
        rows.append(cells)
    return ["Other metrics:", "", *_table(header, rows), ""]


def _pairs(metric: str, pairs: pd.DataFrame) -> list[str]:
    if pairs.empty:
        return []
    rows = [
        [
            md_escape(p["entry_a"]),
            md_escape(p["entry_b"]),
            str(int(p["n"])),
            f"{p['mean_diff']:.4g}",
            _hl(p),
            f"{p['cles']:.2f}" if p["cles"] == p["cles"] else "–",
            fmt_p(p["p"]),
            fmt_p(p["p_holm"]) + (" \\*" if p["significant"] else ""),
        ]
        for _, p in pairs.iterrows()
    ]
    title = f"All pairs, {stats.metric_label(metric)} (\\* adjusted p < α; the same family as the † marks):"
    return [
        title,
        "",
        *_table(
            ["A", "B", "n", "mean(A − B)", "HL(A − B) [unadjusted CI]", "CLES", "p", "p (Holm)"],
            rows,
            ["l", "l", "r", "r", "r", "r", "r", "r"],
        ),
        "",
    ]


def _hl(p: pd.Series) -> str:
    if pd.isna(p["hl"]):
        return "–"
    ci = f" [{p['hl_low']:+.3g}, {p['hl_high']:+.3g}]" if p["hl_low"] == p["hl_low"] else ""
    return f"{p['hl']:+.3g}{ci}"


def _number(value: object) -> str:
    """A spec number as written (``20``, ``12.5``); anything else escaped; ``?`` when absent."""
    if value is None:
        return "?"
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return md_escape(value)


def _runs(report: Report) -> list[str]:
    coll = report.collection
    counts = {s: len(coll.runs_with(s)) for s in STATUSES}
    lines = ["## Runs", ""]
    if not coll.runs:
        return [*lines, "The input was a per-case table, not a results folder: no runs to list.", ""]
    lines += [", ".join(f"{n} {s}" for s, n in counts.items()) + ".", ""]
    bad = [r for r in coll.runs if r.status != "complete" or r.problems]
    if bad:
        rows = []
        for r in bad:
            row = r.to_row()
            rows.append(
                [
                    md_escape(r.run_id),
                    r.status,
                    md_escape(row["model"] or "?"),
                    md_escape(row["pretrain"] or "?"),
                    _number(row["fraction"]),
                    _number(row["seed"]),
                    md_escape(row["detail"][:400]),
                ]
            )
        header = ["run", "status", "model", "pre-training", "fraction", "seed", "error / problem"]
        lines += _table(header, rows)
        lines.append("")
    return lines


def render_markdown(report: Report) -> str:
    """The whole Markdown board."""
    opts = report.options
    coll = report.collection
    n_complete = len(coll.runs_with("complete"))
    lines = [f"# {md_escape(report.title)}", ""]
    lines.append(
        f"Source: `{report.source}`"
        + (f" · {n_complete} complete run(s) of {len(coll.runs)}" if coll.runs else "")
        + f" · {coll.cases['case_id'].nunique() if not coll.cases.empty else 0} test case id(s)."
        + (f" Built by {md_escape(report.built_by)}." if report.built_by else "")
    )
    if opts.note:
        lines += ["", f"**{md_escape(opts.note)}**"]
    if opts.command:
        lines += ["", "Reproduce with:", "", "```sh", opts.command, "```"]
    if training_conditions(report):
        lines += ["", md_escape(training_conditions(report))]
    lines.append("")
    if report.warnings:
        lines += [
            f"> **{len(report.warnings)} warning(s)** while reading the results: see [Warnings](#warnings).",
            "",
        ]
    lines += [
        f"{unit_sentence(report)} {WORSE_MARKER}: significantly worse than the best entry (paired "
        "Wilcoxon signed-rank, the pairs of working, distinct entries Holm-adjusted together, "
        f"p < {opts.alpha:g}). Best mean in bold (none when the top means tie). "
        f"{FAILED_FIT_MARKER} {FAILED_FIT_TEXT}: a seed predicted no lesion "
        "on any test scan (listed after the ranked entries, never best). ↑ higher is better, ↓ lower "
        "is better. [How these numbers were made](#how-these-numbers-were-made).",
        "",
    ]
    lines += _claims(report)
    overviews = build_overviews(report.sections)
    if overviews:
        lines += [
            "## Overview",
            "",
            "Mean over the test cases of each entry at each label fraction (the full tables, with "
            "spread, confidence intervals, ranks and p-values, follow).",
            "",
        ]
        for ov in overviews:
            lines += [
                f"**{metric_header(ov.metric)}** · trained on {md_escape(ov.train_dataset)}, "
                f"tested on {md_escape(ov.test_set)}",
                "",
                *_overview(ov),
                "",
            ]
    for train in sorted({s.train_dataset for s in report.sections}):
        lines += [f"## Trained on {md_escape(train)}", ""]
        if train in report.curves:
            lines += [f"![Metrics against label fraction]({report.curves[train]})", ""]
        lines += _cost(report, train)
        for s in (s for s in report.sections if s.train_dataset == train):
            lines += [f"### {md_escape(s.test_set)} · {s.fraction:g} % of the labels", "", f"{s.n_text}.", ""]
            lines += [*_board(s), ""]
            lines += failed_fits_lines(s)
            if s.missing:
                lines += [
                    "**Not in this table** (see [Runs](#runs)): "
                    + "; ".join(md_escape(m) for m in s.missing)
                    + ".",
                    "",
                ]
            for m in s.metrics:
                lines.append(f"Friedman ({stats.metric_label(m)}): {s.friedman[m]}.  ")
                lines += [f"{note}  " for note in s.notes.get(m, [])]
                if s.stability.get(m):
                    lines.append(f"{s.stability[m]}  ")
            lines.append("")
            if "ranks" in s.figures:
                lines += [f"![Ranking stability]({s.figures['ranks']})", ""]
            lines += _others(s)
            details = []
            for m in s.metrics:
                if f"cd:{m}" in s.figures:
                    alt = f"Critical-difference diagram, {stats.metric_label(m)}"
                    details += [f"![{alt}]({s.figures[f'cd:{m}']})", ""]
            for m in s.metrics:  # the other metrics' pairs are in pairwise.csv
                details += _pairs(m, s.pairwise[m])
            if details:
                summary = "<details><summary>Critical-difference diagrams and all pairwise tests</summary>"
                lines += [summary, "", *details, "</details>", ""]
            if "overlay" in s.figures:
                lines += [
                    "Examples (TP green, TN black, FP red, FN blue):",
                    "",
                    f"![Example predictions]({s.figures['overlay']})",
                    "",
                ]
    if not report.sections:
        lines += ["No per-case results to rank.", ""]
    lines += _runs(report)
    lines += ["## Warnings", ""]
    lines += [f"- {md_escape(w)}" for w in report.warnings] or ["None."]
    lines += ["", "## How these numbers were made", ""]
    lines += [f"- {t}" for t in settings_lines(report.leaderboard.settings)]
    lines += [
        "- Claims check: the claims are data (`bench3d2d.evaluation.claims.PAPER_CLAIMS`); paired "
        "Wilcoxon over units for 'beats' and 'helps' claims, Mann-Whitney U between per-unit gains for "
        "'smaller gain' claims; the comparisons of one claim are Holm-adjusted together (claims are not "
        "corrected across each other); a 'beats' claim is tested against every baseline entry.",
        "- Files: `cases.csv` (every case, its patient, model, pre-training, seed and metric), "
        "`summary.csv`, `pairwise.csv`, `friedman.csv`, `ranks.csv`, `fits.csv`, `claims.csv`, "
        "`cost.csv`, `runs.csv`, `report.json`, `leaderboard.tex`, `index.html`.",
        "",
    ]
    return "\n".join(lines)


def write_markdown(report: Report, out: Path) -> list[Path]:
    """``README.md``."""
    return [atomic_write_text(out / "README.md", render_markdown(report))]
