"""``build_report``: results folder -> tables, figures and every writer's output in one folder."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import check_claims
from bench3d2d.report import figures
from bench3d2d.report.collect import ResultsCollection, read_prediction
from bench3d2d.report.cost import cost_table
from bench3d2d.report.model import FIGURES_DIR, Report, ReportOptions
from bench3d2d.report.provenance import code_version
from bench3d2d.report.sources import collect_sources
from bench3d2d.report.tables import SECTION, build_leaderboard
from bench3d2d.report.view import Section, build_sections, fmt_fraction


def slug(*parts: object) -> str:
    """A file-name-safe, collision-free name for user-given parts."""
    text = "_".join(str(p) for p in parts)
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")[:60] or "x"
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _pick_cases(values: pd.Series, n: int) -> list[str]:
    """Up to ``n`` cases spread from the best to the worst mean value (deterministic)."""
    ordered = values.sort_values(ascending=False, kind="stable")
    if len(ordered) <= n:
        return list(ordered.index)
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, n)).astype(int))
    return [ordered.index[i] for i in idx]


def _overlay(report: Report, section: Section, out: Path) -> str | None:
    """The overlay figure of a section, or None when no case has stored predictions for every entry."""
    coll, lb = report.collection, report.leaderboard
    if not coll.runs or report.options.overlay_cases <= 0:
        return None
    c = coll.cases
    sel = c[
        (c["train_dataset"] == section.train_dataset)
        & (c["test_set"] == section.test_set)
        & (c["fraction"] == section.fraction)
    ]
    entries = [(r.model, r.pretrain) for r in section.rows]
    run_of: dict[tuple, str] = {}
    for e in entries:
        rows = sel[(sel["model"] == e[0]) & (sel["pretrain"] == e[1])].sort_values(["seed", "run_id"])
        if not rows.empty:
            run_of[e] = str(rows["run_id"].iloc[0])
    if not run_of:
        return None
    case_ids = sorted(sel["case_id"].unique())

    def stored(case: str) -> bool:
        return all(e in run_of and coll.prediction_path(run_of[e], section.test_set, case) for e in entries)

    available = [k for k in case_ids if stored(k)]
    if not available:
        return None
    metric = "dice" if "dice" in set(sel["metric"]) else section.metrics[0] if section.metrics else None
    means = lb.case_means
    m = means[
        (means["train_dataset"] == section.train_dataset)
        & (means["test_set"] == section.test_set)
        & (means["fraction"] == section.fraction)
        & (means["metric"] == metric)
        & means["case_id"].isin(available)
    ]
    per_case = m.groupby("case_id")["value"].mean()
    if stats.metric_direction(metric or "") == "lower":
        per_case = -per_case
    cases = _pick_cases(per_case.reindex(available).fillna(-math.inf), report.options.overlay_cases)

    def load(case: str, entry: tuple[str, str]):
        path = coll.prediction_path(run_of[entry], section.test_set, case)
        if path is None:
            return "no prediction stored"
        try:
            return read_prediction(path)
        except ValueError as exc:
            report.warnings.append(str(exc))
            return "unreadable prediction file"

    fig = figures.overlay_grid(
        cases,
        entries,
        load,
        title=f"{section.train_dataset} → {section.test_set}, "
        f"{fmt_fraction(section.fraction)} labels: lowest seed of each entry",
    )
    rel = f"{FIGURES_DIR}/overlay_{slug(section.train_dataset, section.test_set, section.fraction)}.png"
    figures.save(fig, out / rel)
    return rel


_FIGURE_PREFIXES = ("fractions_", "cd_", "overlay_", "ranks_", "cost_")


def _remove_old_figures(out: Path) -> None:
    """Delete the figures a previous report wrote to ``out`` (only ours), so none is left stale."""
    folder = out / FIGURES_DIR
    if folder.is_dir():
        for old in folder.glob("*.png"):
            if old.name.startswith(_FIGURE_PREFIXES):
                old.unlink()


def _figures(report: Report, out: Path) -> None:
    _remove_old_figures(out)
    lb = report.leaderboard
    metrics = list(report.options.metrics)
    for train in sorted(lb.summary["train_dataset"].unique()) if not lb.summary.empty else []:
        fig = figures.fraction_curves(lb.summary, train, metrics, str(lb.settings.get("unit", "case")))
        if fig is not None:
            rel = f"{FIGURES_DIR}/fractions_{slug(train)}.png"
            figures.save(fig, out / rel)
            report.curves[train] = rel
    for s in report.sections:
        for m in s.metrics:
            fam = lb.family(s.train_dataset, s.test_set, s.fraction, m)
            title = (
                f"{s.train_dataset} → {s.test_set}, {fmt_fraction(s.fraction)} labels: "
                f"{stats.metric_label(m)}"
            )
            fig = figures.cd_diagram(
                fam,
                lb.pairs(s.train_dataset, s.test_set, s.fraction, m),
                alpha=report.options.alpha,
                title=title,
            )
            if fig is not None:
                rel = f"{FIGURES_DIR}/cd_{slug(s.train_dataset, s.test_set, s.fraction, m)}.png"
                figures.save(fig, out / rel)
                s.figures[f"cd:{m}"] = rel
        _rank_figure(report, s, out)
        overlay = _overlay(report, s, out)
        if overlay:
            s.figures["overlay"] = overlay
    _cost_figures(report, out)


def _rank_figure(report: Report, s: Section, out: Path) -> None:
    """The ranking-stability blob plot of a section's first board metric."""
    if not s.metrics:
        return
    m = s.metrics[0]
    dist = report.leaderboard.rank_distribution(s.train_dataset, s.test_set, s.fraction, m)
    order = [r.entry for r in s.rows]
    title = (
        f"{s.train_dataset} → {s.test_set}, {fmt_fraction(s.fraction)} labels: "
        f"{stats.metric_label(m)}\nrank per bootstrap resample of the {s.unit}s"
    )
    fig = figures.rank_blobs(dist, order, title)
    if fig is not None:
        rel = f"{FIGURES_DIR}/ranks_{slug(s.train_dataset, s.test_set, s.fraction, m)}.png"
        figures.save(fig, out / rel)
        s.figures["ranks"] = rel


def _cost_figures(report: Report, out: Path) -> None:
    """Accuracy against fine-tuning time, per train dataset, on its own test set (else its first)."""
    lb, metric = report.leaderboard, (list(report.options.metrics) or ["dice"])[0]
    for train in sorted({s.train_dataset for s in report.sections}):
        tests = sorted({s.test_set for s in report.sections if s.train_dataset == train})
        test = train if train in tests else tests[0]
        fig = figures.accuracy_vs_cost(lb.summary, report.cost, train, metric, test)
        if fig is not None:
            rel = f"{FIGURES_DIR}/cost_{slug(train)}.png"
            figures.save(fig, out / rel)
            report.cost_figures[train] = rel


def _missing_runs(coll: ResultsCollection, section: Section) -> list[str]:
    """Runs planned for a section (same train dataset, fraction and test set) that are not complete."""
    out = []
    for run in coll.runs:
        if run.status == "complete":
            continue
        train, fraction = run.field("train_dataset", "dataset"), run.field("fraction")
        tests = run.field("test_sets")
        try:
            same_fraction = fraction is not None and math.isclose(float(fraction), section.fraction)
        except (TypeError, ValueError):
            same_fraction = False
        named = {str(t).split(":", 1)[0] for t in tests} if isinstance(tests, list) else {section.test_set}
        if train == section.train_dataset and same_fraction and section.test_set in named | {train}:
            model, pre = run.field("model") or "?", run.field("pretrain") or "none"
            out.append(
                f"{stats.entry_label(str(model), str(pre))}, seed {run.field('seed')}: {run.status} "
                f"(run {run.run_id})"
            )
    return out


def build_report(
    results: str | Path | Sequence[str | Path], out: str | Path, options: ReportOptions | None = None
) -> Report:
    """Read ``results`` (a results folder, one per-case table or a published board folder, or a list of
    them: :func:`bench3d2d.report.sources.collect_sources`), compute every table and figure and write
    the requested formats into ``out``. Returns the :class:`Report` (its ``files`` are the files written)."""
    from bench3d2d.report.writers import WRITERS

    options = options or ReportOptions()
    sources = [Path(results)] if isinstance(results, (str, Path)) else [Path(r) for r in results]
    results, out = sources[0], Path(out)
    coll = collect_sources(sources)
    lb = build_leaderboard(
        coll.cases,
        alpha=options.alpha,
        confidence=options.confidence,
        n_resamples=options.bootstrap_resamples,
        seed=options.seed,
        unit=options.unit,
        rank_resamples=options.rank_resamples,
    )
    sections = build_sections(lb, list(options.metrics), options.alpha)
    for s in sections:
        s.missing = _missing_runs(coll, s)
    title = options.title or f"bench3d2d leaderboard: {results.resolve().name}"
    source = " + ".join(p.resolve().name for p in sources)
    report = Report(
        title=title,
        source=source,
        collection=coll,
        leaderboard=lb,
        sections=sections,
        options=options,
        warnings=[*coll.warnings, *lb.warnings],
        built_by=code_version(),
    )
    failed = {
        tuple(r) for r in lb.fits.loc[lb.fits["failed_fit"], [*SECTION, *stats.ENTRY]].itertuples(index=False)
    }
    report.claims = check_claims(
        lb.case_means, lb.units, options.claims, options.alpha, str(lb.settings["unit"]), failed
    )
    report.cost = cost_table(coll)
    if coll.cases.empty:
        report.warnings.append("no per-case results: the tables are empty (see 'Runs' for what failed)")
    out.mkdir(parents=True, exist_ok=True)
    if options.figures:
        _figures(report, out)
        report.files += sorted((out / FIGURES_DIR).glob("*.png")) if (out / FIGURES_DIR).is_dir() else []
    for fmt in ("csv", "json", "latex", "md", "html"):
        if fmt in options.formats:
            report.files += WRITERS[fmt](report, out)
    return report
