"""A self-contained HTML page (``index.html``): figures embedded, sortable tables, no network access.

Rendered with jinja2 and autoescaping on: every name (model, dataset, test set, case, run, warning
text) comes from users or plugins and is escaped; the only script is the page's own inline sorter.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from bench3d2d import __version__
from bench3d2d._io import atomic_write_text
from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import claim_summary, claims_intro
from bench3d2d.report.collect import STATUSES
from bench3d2d.report.view import (
    FAILED_FIT_MARKER,
    FAILED_FIT_TEXT,
    WORSE_MARKER,
    fmt_p,
    metric_header,
    settings_lines,
    training_conditions,
    unit_sentence,
)

if TYPE_CHECKING:
    from bench3d2d.report.model import Report

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ }} is escaped, whatever the template's extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["sortkey"] = _sortkey
    env.filters["p"] = fmt_p
    env.globals["metric_header"] = metric_header
    env.globals["metric_label"] = stats.metric_label
    return env


def _sortkey(value: object) -> str:
    """``data-sort`` attribute: a number as text, or empty for NaN (sorted last)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if not math.isfinite(v) else repr(v)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(report: Report, out: Path) -> str:
    """The page as text; figures are read from ``out`` and embedded."""
    images: dict[str, str] = {}

    def image(rel: str) -> str:
        if rel not in images:
            images[rel] = _data_uri(out / rel)
        return images[rel]

    coll = report.collection
    runs = coll.runs_table()
    counts = {s: len(coll.runs_with(s)) for s in STATUSES}
    trains = sorted({s.train_dataset for s in report.sections})
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        title=report.title,
        sections=report.sections,
        trains=trains,
        curves=report.curves,
        image=image,
        runs=runs.to_dict(orient="records"),
        has_runs=bool(coll.runs),
        counts=counts,
        n_cases=int(coll.cases["case_id"].nunique()) if not coll.cases.empty else 0,
        warnings=report.warnings,
        settings=settings_lines(report.leaderboard.settings),
        marker=WORSE_MARKER,
        failed_mark=FAILED_FIT_MARKER,
        failed_text=FAILED_FIT_TEXT,
        alpha=report.options.alpha,
        command=report.options.command,
        version=__version__,
        unit="scan" if report.leaderboard.settings.get("unit") == "case" else "patient",
        claims=report.claims,
        claim_counts=claim_summary(report.claims) if not report.claims.empty else [],
        claims_intro=claims_intro(
            report.options.alpha, "scan" if report.leaderboard.settings.get("unit") == "case" else "patient"
        ),
        unit_text=unit_sentence(report).replace("**", ""),
        conditions=training_conditions(report),
        cost=_cost_rows(report),
        cost_figures=report.cost_figures,
        small_n=stats.SMALL_N,
    )


def _cost_rows(report: Report) -> dict[str, list[dict]]:
    """Cost table rows per train dataset, with their texts."""
    out: dict[str, list[dict]] = {}
    if report.cost is None or report.cost.empty:
        return out
    for r in report.cost.to_dict(orient="records"):

        def text(v: float, fmt: str) -> str:
            return fmt.format(v) if v is not None and math.isfinite(v) else "–"

        out.setdefault(r["train_dataset"], []).append(
            {
                **r,
                "pretrain_label": stats.pretrain_label(r["pretrain"]),
                "parameters_text": text(r["parameters"], "{:,.0f}"),
                "fit_text": text(r["fit_s"], "{:.0f}"),
                "total_text": text(r["total_s"], "{:.0f}"),
                "peak_text": text(r["peak_memory_mb"], "{:.0f}")
                if math.isfinite(r["peak_memory_mb"])
                else "not recorded",
            }
        )
    return out


def write_html(report: Report, out: Path) -> list[Path]:
    """``index.html``."""
    return [atomic_write_text(out / "index.html", render_html(report, out))]
