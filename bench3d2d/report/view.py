"""What every writer shows, computed once: formatted cells of the board tables, in board order.

Writers (Markdown, HTML, LaTeX) only lay these out and escape the text for their format. All text that
comes from users or plugins (model, dataset, test set and case names) is left raw here: escaping is
the writers' job, since each format needs its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench3d2d.evaluation import statistics as stats
from bench3d2d.report.tables import Leaderboard

#: Marker of an entry significantly worse than the best (Holm-adjusted Wilcoxon p < alpha, all pairs).
WORSE_MARKER = "†"
#: Mark of an entry with a failed fit (a seed that predicted no lesion on any test scan; see
#: :func:`bench3d2d.report.tables.failed_fits`).
FAILED_FIT_MARKER = "✗"
#: What replaces the scores of an entry whose every seed is a failed fit.
FAILED_FIT_TEXT = "failed fit"
#: How a unit is named in text.
UNIT_NAMES = {"patient": ("patient", "patients"), "case": ("scan", "scans")}


def unit_count(n: int, unit: str) -> str:
    """``3 patients`` / ``1 scan``."""
    one, many = UNIT_NAMES.get(unit, (unit, unit + "s"))
    return f"{n} {one if n == 1 else many}"


def fmt_value(metric: str, value: float) -> str:
    """A metric value with the number of decimals that suits it (``–`` for NaN)."""
    if value is None or not math.isfinite(value):
        return "–"
    digits = 3 if metric in ("dice", "precision", "recall") else 3 if abs(value) < 10 else 2
    return f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value: three significant digits, ``<0.001`` below 0.001, ``–`` for NaN."""
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p >= 0.01 else f"{p:.4f}"


def fmt_fraction(fraction: float) -> str:
    """``5 %``."""
    return f"{fraction:g} %"


@dataclass
class Cell:
    """One metric's cells of one board row (text) plus the raw numbers (for sorting)."""

    mean_std: str
    median: str
    ci: str
    rank: str
    p_holm: str
    marker: str
    seeds: str  # seed-to-seed spread: "sd 0.004 [0.41, 0.42]" (one seed: "1 seed")
    effect: str  # Hodges-Lehmann shift vs the best entry with its interval
    is_best: bool
    mean: float
    median_value: float
    mean_rank: float
    p_value: float
    n: int
    n_nan: int
    failed_seeds: int = 0  # seeds of the entry that are failed fits (see FAILED_FIT_MARKER)
    fit_seeds: int = 0  # seeds judged (those with area rows)

    @property
    def all_failed(self) -> bool:
        """Every seed of the entry is a failed fit: its scores are no result to show."""
        return 0 < self.fit_seeds == self.failed_seeds


def failed_fit_text(failed_seeds: int, fit_seeds: int) -> str:
    """``✗ failed fit (2/3 seeds)``; empty when no seed failed."""
    if failed_seeds <= 0:
        return ""
    plural = "s" if fit_seeds != 1 else ""
    return f"{FAILED_FIT_MARKER} {FAILED_FIT_TEXT} ({failed_seeds}/{fit_seeds} seed{plural})"


@dataclass
class Row:
    """One entry of a board."""

    model: str
    pretrain: str
    entry: str
    pretrain_label: str
    n: int
    seeds: str
    cells: dict[str, Cell] = field(default_factory=dict)
    failures: str = "–"  # share of failed cases (empty prediction, non-empty reference)
    failure_rate: float = float("nan")
    both_empty: str = ""  # share of cases with both masks empty (HD95 undefined)
    failed_seeds: int = 0  # seeds that are failed fits (nothing predicted on any test scan)
    fit_seeds: int = 0

    @property
    def failed_fit(self) -> str:
        """``✗ failed fit (2/3 seeds)`` for an entry with a failed fit, else ``""``."""
        return failed_fit_text(self.failed_seeds, self.fit_seeds)


@dataclass
class Section:
    """One board: (train dataset, test set, fraction)."""

    train_dataset: str
    test_set: str
    fraction: float
    metrics: list[str]
    other_metrics: list[str]
    rows: list[Row]
    friedman: dict[str, str]
    pairwise: dict[str, pd.DataFrame]
    figures: dict[str, str] = field(default_factory=dict)  # "cd:<metric>" / "overlay" -> relative path
    anchor: str = ""
    missing: list[str] = field(default_factory=list)  # runs of this section that are not complete
    unit: str = "patient"
    n_units: int = 0
    n_scans: int = 0
    reachable: dict[str, bool] = field(default_factory=dict)  # metric -> can any pairwise test reach alpha
    notes: dict[str, list[str]] = field(default_factory=dict)  # metric -> notes under the board
    stability: dict[str, str] = field(default_factory=dict)  # metric -> ranking-stability sentence
    failed_fits: list[str] = field(default_factory=list)  # "entry: 2 of 3 seeds (0, 2)" per failed entry

    @property
    def n_text(self) -> str:
        """``unit: patient · n = 3 patients, 14 scans``."""
        name = UNIT_NAMES.get(self.unit, (self.unit,))[0]
        return f"unit: {name} · n = {unit_count(self.n_units, self.unit)}" + (
            f", {unit_count(self.n_scans, 'case')}" if self.unit != "case" else ""
        )

    @property
    def cd_metrics(self) -> list[str]:
        """Board metrics that have a critical-difference diagram."""
        return [m for m in self.metrics if f"cd:{m}" in self.figures]

    @property
    def heading(self) -> str:
        """``test set · fraction`` (the train dataset is the chapter)."""
        return f"{self.test_set} · {fmt_fraction(self.fraction)} of the labels"


def _seeds_text(metric: str, r: pd.Series) -> str:
    sd = r.get("seed_sd", math.nan)
    if sd is None or not math.isfinite(sd):
        return "1 seed"
    return (
        f"sd {fmt_value(metric, sd)} [{fmt_value(metric, r['seed_min'])}, {fmt_value(metric, r['seed_max'])}]"
    )


def _effect_text(metric: str, r: pd.Series) -> str:
    hl = r.get("hl_vs_best", math.nan)
    if hl is None or not math.isfinite(hl):
        return "–"
    lo, hi = r.get("hl_low_vs_best", math.nan), r.get("hl_high_vs_best", math.nan)
    ci = f" [{lo:+.3g}, {hi:+.3g}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{hl:+.3g}{ci}"


def _cell(r: pd.Series) -> Cell:
    metric = r["metric"]
    n_ok = int(r["n"] - r["n_nan"])
    mean, std = r["mean"], r["std"]
    mean_std = fmt_value(metric, mean) + ("" if not math.isfinite(std) else f" ± {fmt_value(metric, std)}")
    ci = (
        "–"
        if not math.isfinite(r["ci_low"])
        else f"[{fmt_value(metric, r['ci_low'])}, {fmt_value(metric, r['ci_high'])}]"
    )
    rank = "–" if not math.isfinite(r["mean_rank"]) else f"{r['mean_rank']:.2f}"
    p_text = "best" if bool(r["is_best"]) else "tie" if r["vs_best"] == "tie" else fmt_p(r["p_holm_vs_best"])
    failed, judged = _int(r.get("failed_seeds")), _int(r.get("fit_seeds"))
    median = fmt_value(metric, r["median"])
    if 0 < judged == failed:  # every seed collapsed: its numbers are no result (they stay in the tests)
        mean_std, median, ci, rank = FAILED_FIT_TEXT, "–", "–", "–"
    return Cell(
        mean_std=mean_std,
        median=median,
        ci=ci,
        rank=rank,
        p_holm=p_text,
        marker=WORSE_MARKER if r["marker"] == "†" else "",
        seeds=_seeds_text(metric, r),
        effect=_effect_text(metric, r),
        is_best=bool(r["is_best"]),
        mean=float(mean),
        median_value=float(r["median"]),
        mean_rank=float(r["mean_rank"]),
        p_value=0.0 if bool(r["is_best"]) else float(r["p_holm_vs_best"]),
        n=n_ok,
        n_nan=int(r["n_nan"]),
        failed_seeds=failed,
        fit_seeds=judged,
    )


def _int(value: Any) -> int:
    """A count from the summary (0 for a missing or NaN one)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0
    return int(v) if math.isfinite(v) else 0


def friedman_text(row: dict | None) -> str:
    """``χ²(k−1) = Q, p = …, n = … patients`` or the real reason why there is none."""
    if not row:
        return "–"
    unit = str(row.get("unit") or "case")
    if not math.isfinite(row.get("Q", math.nan)):
        reason = str(row.get("reason") or "") or (
            f"needs ≥ 2 complete units and ≥ 2 entries; n = {int(row['n'])}, k = {int(row['k'])}"
        )
        return "not computed: " + reason.replace("units", UNIT_NAMES.get(unit, (unit, unit + "s"))[1])
    p = fmt_p(row["p"])
    p = f"p < {p[1:]}" if p.startswith("<") else f"p = {p}"
    note = str(row.get("reason") or "")
    note = "" if not note or note == "nan" else "; " + note.replace("unit", UNIT_NAMES.get(unit, (unit,))[0])
    return (
        f"χ²({int(row['k']) - 1}) = {row['Q']:.2f}, {p}, Kendall's W = {row['W']:.2f}, "
        f"n = {unit_count(int(row['n']), unit)} with every entry (χ² approximation){note}"
    )


def reach_text(row: dict | None, alpha: float) -> str:
    """Why no pairwise test of a family can be significant, or "" when one can."""
    if not row or bool(row.get("reachable")) or str(row.get("reason", "")).startswith("no direction"):
        return ""
    if not row.get("n_pairs"):
        return (
            "No pairwise test here: fewer than two working, distinct entries (failed fits and entries "
            "identical to another are left out of the Holm family); the p column and the † marks are "
            "left out."
        )
    n_nz = int(row.get("n_nonzero_max") or 0)
    return (
        f"No pairwise test can reach p < {alpha:g} here: with at most {n_nz} non-zero differences "
        f"the smallest possible two-sided p is {stats.min_attainable_p(n_nz):.3g}, "
        f"times {int(row['n_pairs'])} pairs (Holm) = {float(row['p_holm_min_possible']):.3g} (capped at 1); "
        "the p column and the † marks are left out."
    )


def stability_text(row: dict | None) -> str:
    """Kendall's tau between bootstrap and full rankings, or why it is not shown."""
    if not row:
        return ""
    unit = str(row.get("unit") or "case")
    units = UNIT_NAMES.get(unit, (unit, unit + "s"))[1]
    if not math.isfinite(row.get("tau_median", math.nan)):
        why = str(row.get("stability") or "")
        return f"Ranking stability: {why.replace(unit + 's', units)}." if why and why != "nan" else ""
    return (
        f"Ranking stability (bootstrap of {units}): Kendall's τ between bootstrap and full ranking, median "
        f"{row['tau_median']:.2f}, 5 % quantile {row['tau_q05']:.2f}."
    )


#: Mark of a family whose first place differs between the rankings (mean, mean rank, significance).
DIFFERS_MARKER = "⚠"


def robustness_text(row: dict | None) -> str:
    """First place under mean, mean rank and significance ranking, flagged when they differ."""
    if not row or not row.get("first_by_mean"):
        return ""
    significance = (
        str(row["first_by_significance"])
        if bool(row.get("reachable"))
        else "no test can reach α, every entry ties"
    )
    text = (
        f"First place by mean: {row['first_by_mean']}; by mean rank: {row['first_by_mean_rank']}; "
        f"by significance (wins after Holm): {significance}."
    )
    if not bool(row.get("first_agrees", True)):
        text = f"{DIFFERS_MARKER} The first place differs between the rankings. " + text
    return text


def interval_text(row: dict | None, confidence: float = 0.95) -> str:
    """What the interval column is at the family's n (t-interval below SMALL_N units)."""
    if not row:
        return ""
    n, unit = int(row.get("n_units") or 0), str(row.get("unit") or "case")
    if n >= stats.SMALL_N:
        return ""
    return (
        f"{confidence * 100:g} % CI: Student-t interval of the mean of the {unit_count(n, unit)} "
        f"(fewer than {stats.SMALL_N}: a bootstrap of so few has too few distinct resamples)."
    )


def build_sections(lb: Leaderboard, metrics: list[str], alpha: float = 0.05) -> list[Section]:
    """One :class:`Section` per (train dataset, test set, fraction), rows in the order of the first metric."""
    out: list[Section] = []
    for train, test, frac in lb.sections():
        present = [m for m in lb.metrics() if not lb.family(train, test, frac, m).empty]
        board = [m for m in metrics if m in present]
        others = [m for m in present if m not in board and stats.metric_direction(m)]
        if not board:
            board, others = others[:1], others[1:]
        order_fam = lb.family(train, test, frac, board[0]) if board else pd.DataFrame()
        rows: dict[tuple, Row] = {}
        for _, r in order_fam.iterrows():
            key = (r["model"], r["pretrain"])
            seeds = (
                f"{int(r['seeds_min'])}"
                if r["seeds_min"] == r["seeds_max"]
                else f"{int(r['seeds_min'])}–{int(r['seeds_max'])}"
            )
            rows[key] = Row(
                model=r["model"],
                pretrain=r["pretrain"],
                entry=r["entry"],
                pretrain_label=stats.pretrain_label(r["pretrain"]),
                n=int(r["n"]),
                seeds=seeds,
            )
        for m in board + others:
            for _, r in lb.family(train, test, frac, m).iterrows():
                key = (r["model"], r["pretrain"])
                if key not in rows:  # an entry without the first metric: append it
                    rows[key] = Row(
                        model=r["model"],
                        pretrain=r["pretrain"],
                        entry=r["entry"],
                        pretrain_label=stats.pretrain_label(r["pretrain"]),
                        n=int(r["n"]),
                        seeds="",
                    )
                rows[key].cells[m] = _cell(r)
        _failures(rows, order_fam)
        failed_list = _failed_fit_list(lb, (train, test, frac), rows)
        fam_rows = {m: lb.friedman_row(train, test, frac, m) for m in board + others}
        first = fam_rows[board[0]] if board else None
        out.append(
            Section(
                train_dataset=train,
                test_set=test,
                fraction=frac,
                metrics=board,
                other_metrics=others,
                rows=list(rows.values()),
                friedman={m: friedman_text(lb.friedman_row(train, test, frac, m)) for m in board + others},
                pairwise={m: lb.pairs(train, test, frac, m) for m in board + others},
                anchor=f"s{len(out) + 1}",
                unit=str(lb.settings.get("unit", "case")),
                n_units=int(first["n_units"]) if first else 0,
                n_scans=int(first["n_scans"]) if first else 0,
                reachable={m: bool((fam_rows[m] or {}).get("reachable", True)) for m in board + others},
                notes={m: _notes(fam_rows[m], alpha, i == 0) for i, m in enumerate(board + others)},
                stability={m: stability_text(fam_rows[m]) for m in board},
                failed_fits=failed_list,
            )
        )
    return out


def _notes(row: dict | None, alpha: float, first: bool) -> list[str]:
    """The notes under a family's table: reachability, robustness, and (first metric) the interval."""
    texts = [reach_text(row, alpha), robustness_text(row), interval_text(row) if first else ""]
    return [t for t in texts if t]


def _failed_fit_list(lb: Leaderboard, section: tuple[str, str, float], rows: dict[tuple, Row]) -> list[str]:
    """``fpbnet (scratch): 2 of 3 seeds (seeds 0, 2)`` for every entry of a section with a failed fit."""
    failed = lb.failed_runs(*section)
    out = []
    for (model, pretrain), g in failed.groupby(["model", "pretrain"], sort=True):
        row = rows.get((model, pretrain))
        judged = row.fit_seeds if row is not None and row.fit_seeds else len(g)
        seeds = ", ".join(str(int(s)) for s in sorted(g["seed"]))
        out.append(
            f"{stats.entry_label(model, pretrain)}: {len(g)} of {judged} seed"
            f"{'s' if judged != 1 else ''} (seed{'s' if len(g) != 1 else ''} {seeds})"
        )
    return out


def _failures(rows: dict[tuple, Row], family: pd.DataFrame) -> None:
    for _, r in family.iterrows():
        row = rows.get((r["model"], r["pretrain"]))
        rate = r.get("failure_rate", math.nan)
        if row is None:
            continue
        row.failed_seeds, row.fit_seeds = _int(r.get("failed_seeds")), _int(r.get("fit_seeds"))
        if rate is None or not math.isfinite(rate):
            continue
        row.failure_rate = float(rate)
        row.failures = f"{rate * 100:.0f} %"
        both = r.get("both_empty_rate", math.nan)
        row.both_empty = f"{both * 100:.0f} %" if both and math.isfinite(both) else ""


@dataclass
class Overview:
    """One train dataset × test set: an entry per row, the first board metric's mean per fraction."""

    train_dataset: str
    test_set: str
    metric: str
    fractions: list[float]
    rows: list[tuple[Row, list[Cell | None]]]


_PRETRAIN_ORDER = {"none": 0, "slo": 1, "faf": 2}


def build_overviews(sections: list[Section]) -> list[Overview]:
    """Per (train dataset, test set), in section order: every entry's cell at every fraction.

    Entries are sorted by model, then scratch, SSL-SLO, SSL-FAF (others after, by name), so that a
    model's variants sit together; the cells keep their best / significance marks.
    """
    groups: dict[tuple[str, str], list[Section]] = {}
    for sec in sections:
        if sec.metrics:
            groups.setdefault((sec.train_dataset, sec.test_set), []).append(sec)
    out = []
    for (train, test), secs in groups.items():
        metric = secs[0].metrics[0]
        secs = sorted(secs, key=lambda x: x.fraction)
        entries: dict[tuple[str, str], Row] = {}
        for sec in secs:
            for row in sec.rows:
                entries.setdefault((row.model, row.pretrain), row)
        order = sorted(entries, key=lambda k: (k[0], _PRETRAIN_ORDER.get(k[1], 9), k[1]))
        by_entry = [{(r.model, r.pretrain): r for r in sec.rows} for sec in secs]
        rows = []
        for key in order:
            cells = [rows_of[key].cells.get(metric) if key in rows_of else None for rows_of in by_entry]
            rows.append((entries[key], cells))
        out.append(Overview(train, test, metric, [sec.fraction for sec in secs], rows))
    return out


def metric_header(metric: str) -> str:
    """``Dice ↑`` / ``Abs. area difference (mm²) ↓``."""
    arrow = {"higher": " ↑", "lower": " ↓"}.get(stats.metric_direction(metric) or "", "")
    return stats.metric_label(metric) + arrow


def unit_sentence(report: Any) -> str:
    """The board's opening sentence on its unit of analysis."""
    unit = str(report.leaderboard.settings.get("unit", "case"))
    if unit == "patient":
        return (
            "Unit of analysis: **patient** (each scan's metric averaged over seeds, then the scans of "
            "each patient averaged; every number of the board, tests, intervals, best and ranks, over "
            "patients)."
        )
    return (
        "Unit of analysis: **scan** (each scan's metric averaged over seeds; every number over "
        "scans, which is optimistic when patients have several scans)."
    )


def settings_lines(settings: dict[str, Any]) -> list[str]:
    """Plain-language description of how the numbers were made."""
    unit = str(settings.get("unit", "case"))
    units = UNIT_NAMES.get(unit, (unit, unit + "s"))[1]
    return [
        "Entry = model × pre-training (scratch, SSL-SLO, SSL-FAF) within a train dataset, test set and "
        "label fraction.",
        f"Unit of analysis: the {unit}. Each case's metric is first averaged over seeds; "
        + (
            "then the scans of each patient are averaged, and entries are paired by patient: scans of one "
            "patient (both eyes, several visits) are not independent, so tests and intervals over scans "
            "would be too optimistic. "
            if unit == "patient"
            else "entries are paired by case id. "
        )
        + "n in each heading: patients and scans. One unit everywhere: the mean ± sd, median, interval, "
        "best mark, ranks, rank bootstrap, cost figure and the claims' numbers all come from the same "
        f"{unit} values the tests use.",
        "Seeds: the seed column gives the seed-to-seed spread (sd of the per-seed means over scans, and "
        "their min and max); every other number uses the seed-averaged values.",
        f"{settings['confidence'] * 100:g} % interval of the mean: {settings['bootstrap_method']}, "
        f"{settings['bootstrap_resamples']} bootstrap resamples, seed {settings['bootstrap_seed']}.",
        f"Test: {settings['test']}.",
        f"Multiple comparisons: {settings['correction']}. {WORSE_MARKER} marks entries significantly worse "
        f"than the best (adjusted p < {settings['alpha']:g}); no entry is best, and none is marked, when the "
        "top means tie. Where no test can reach the threshold at the family's n, the board says so.",
        f"Effect sizes: {settings['effect_size']}. 'Δ vs best' is the Hodges-Lehmann shift of the entry "
        "against the best entry, in the metric's unit.",
        "Failures: a case whose prediction is empty while the reference is not (or the reverse) gets the "
        "worst value of every metric (Dice, precision, recall 0; HD95 the image diagonal in mm; absolute "
        "area difference the image area in mm², for results written from this release on); the failure "
        "column is the share of such (scan, seed) results among the entry's. HD95 is NaN only where both "
        "masks are empty; NaNs are left out of the means and counted.",
        f"Failed fits ({FAILED_FIT_MARKER}): a seed whose prediction is empty on every scan of the test set "
        "while some reference there has a lesion (a collapsed model, e.g. one that outputs background "
        "everywhere), read from the per-case areas. Such an entry is never best and not ranked: it is "
        "listed after the ranked entries with the count of failed seeds, and named under 'Failed fits'; "
        "where every seed failed, 'failed fit' stands in place of its scores. On every metric it is ranked "
        "after every working entry (mean rank, rank bootstrap, critical-difference diagram), so a model "
        "that predicts nothing never outranks one that works (an empty prediction scores the reference's "
        "area on the area difference, which can look good); its pairs are tested but left out of the Holm "
        "family, and claims that involve it are not testable.",
        "HD95: MedPy's definition with its default connectivity 1 (border = mask minus its erosion by "
        "the 4-neighbourhood cross), Euclidean distances in mm, 95th percentile of both directions pooled.",
        f"Mean rank: rank of each entry within each {unit} (1 = best), averaged over the {units} where every "
        "entry has a value; Friedman test (tie-corrected, χ² approximation) on the same "
        f"{units}. Ranking stability: {settings['rank_resamples']} bootstrap resamples of the {units}, "
        f"entries re-ranked by mean, Kendall's τ against the full ranking; not shown below "
        f"{settings.get('small_n', stats.SMALL_N)} {units}. Ranking robustness (challengeR): the first place "
        "by mean (aggregate-then-rank), by mean rank (rank-then-aggregate) and by significance (number "
        f"of entries beaten after Holm); {DIFFERS_MARKER} flags a family where it differs.",
        f"Ties: values and paired differences are compared on "
        f"{settings.get('tie_decimals', stats.TIE_DECIMALS)} decimals, so floating-point noise (1e-16) "
        "never breaks a tie or makes a zero difference non-zero.",
        f"Computed with NumPy and SciPy {settings['scipy']} only (no GPL code).",
    ]


def _distinct(values: list[Any]) -> str:
    """Distinct values in first-seen order, comma-separated; "not recorded" when there are none."""
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    return ", ".join(seen) if seen else "not recorded"


def training_conditions(report: Any) -> str:
    """One line naming how the board's complete runs were trained: profile, recipe set, precision,
    seeds and torch threads (each as recorded in the runs' ``spec.json`` and ``result.json``), then
    each model's recipe source (:func:`recipe_sources`)."""
    runs = report.collection.runs_with("complete")
    if not runs:
        return ""
    precision = [(r.result.get("precision") or {}).get("dtype") for r in runs]
    threads = [(r.result.get("environment") or {}).get("torch_threads") for r in runs]
    seeds = sorted({int(s) for s in (r.spec.get("seed") for r in runs) if s is not None})
    return (
        f"Training: profile {_distinct([r.spec.get('profile') for r in runs])} · recipe set "
        f"{_distinct([r.spec.get('recipe') for r in runs])} · precision {_distinct(precision)} · "
        f"seeds {_distinct(seeds)} · torch threads {_distinct(threads)}. {recipe_sources(runs)}"
    ).strip()


def recipe_sources(runs: list[Any]) -> str:
    """``Recipes: fpbnet tuned (shipped table); my_net tuned (my_recipes.json).``: what each model's
    runs trained with, from the ``recipe`` their ``result.json`` records (empty when none does)."""
    from bench3d2d.results import recipe_label

    by_model: dict[str, list[str]] = {}
    for r in runs:
        if r.result.get("recipe"):
            by_model.setdefault(str(r.spec.get("model")), []).append(recipe_label(r.result["recipe"]))
    if not by_model:
        return ""
    return "Recipes: " + "; ".join(f"{m} {_distinct(labels)}" for m, labels in sorted(by_model.items())) + "."
