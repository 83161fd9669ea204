"""Leaderboard figures (matplotlib, Agg): metric against label fraction (the paper's Fig. 4), critical-
difference diagrams (scikit-posthocs, with the Holm-adjusted Wilcoxon tests as the significance matrix) and
example overlays (the paper's Fig. 5: TP green, TN black, FP red, FN blue)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench3d2d._io import TEMP_SUFFIX, temp_prefix
from bench3d2d.evaluation import statistics as stats
from bench3d2d.report.collect import Prediction

#: Overlay colours (RGB): true positive, true negative, false positive, false negative.
OVERLAY_COLOURS = {
    "TP": (0.0, 0.75, 0.0),
    "TN": (0.0, 0.0, 0.0),
    "FP": (0.9, 0.0, 0.0),
    "FN": (0.0, 0.35, 1.0),
}
#: Line style of each pre-training; others cycle through :data:`_EXTRA_STYLES`.
PRETRAIN_STYLES = {"none": "-", "slo": "--", "faf": ":"}
_EXTRA_STYLES = ["-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]

STYLE: dict[Any, Any] = {  # matplotlib's rc keys (its stubs want them as literals)
    "text.parse_math": False,  # names come from users: "$...$" in a name is text, not mathtext
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "savefig.dpi": 150,
}


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per model (sorted names, tab10 then tab20), the same in every figure of a report."""
    names = sorted(set(models))
    # ListedColormaps, whose .colors is a list of RGB tuples (the stubs type it as any array)
    tab10: Any = plt.get_cmap("tab10")
    tab20: Any = plt.get_cmap("tab20")
    palette = list(tab10.colors) + list(tab20.colors[1::2])
    return {m: palette[i % len(palette)] for i, m in enumerate(names)}


def pretrain_styles(pretrains: Sequence[str]) -> dict[str, Any]:
    """Line style per pre-training: scratch solid, SSL-SLO dashed, SSL-FAF dotted, others dash-dot..."""
    out: dict[str, Any] = {}
    extra = iter(_EXTRA_STYLES * 4)
    for p in pretrain_order(pretrains):
        out[p] = PRETRAIN_STYLES.get(p) or next(extra)
    return out


def pretrain_order(pretrains: Sequence[str]) -> list[str]:
    """Scratch, SSL-SLO, SSL-FAF, then any other pre-training by name."""
    known = list(PRETRAIN_STYLES)
    return sorted(set(pretrains), key=lambda p: (known.index(p) if p in known else len(known), p))


def _legend_rows(rows: list[list]) -> tuple[list, int]:
    """Handles of a figure legend laid out row by row (matplotlib fills legends column by column)."""
    ncol = max(len(r) for r in rows)
    blank = Line2D([], [], linestyle="none", label=" ")
    padded = [r + [blank] * (ncol - len(r)) for r in rows]
    return [padded[r][c] for c in range(ncol) for r in range(len(padded))], ncol


def fraction_label(fraction: float) -> str:
    """``5 %``-style label of a label fraction in percent."""
    return f"{fraction:g} %"


def save(fig: Figure, path: Path) -> Path:
    """Write a PNG (no timestamp or version in its metadata, so reruns give the same bytes) and close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{temp_prefix(path.name)}png{TEMP_SUFFIX}")  # the next report removes it if killed
    fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.04)
    plt.close(fig)
    tmp.replace(path)
    return path


_FAILED_COLOUR = "#b42318"


def _failed(rows: pd.DataFrame) -> np.ndarray:
    """Which summary rows are entries with a failed fit (``failed_fit``; False where not recorded)."""
    if "failed_fit" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return rows["failed_fit"].fillna(False).astype(bool).to_numpy()


def fraction_curves(
    summary: pd.DataFrame,
    train_dataset: str,
    metrics: Sequence[str] = stats.HEADLINE_METRICS,
    unit: str = "case",
) -> Figure | None:
    """Metric (mean of the unit values, 95 % CI of the summary) against label fraction: one panel per
    test set (columns) and metric (rows), one line per model (colour), pre-training as line style. None
    when there is nothing to draw."""
    s = summary[(summary["train_dataset"] == train_dataset) & summary["metric"].isin(metrics)]
    metrics = [m for m in metrics if m in set(s["metric"])]
    if s.empty or not metrics:
        return None
    test_sets = sorted(s["test_set"].unique())
    fractions = sorted(s["fraction"].unique())
    xpos = {f: i for i, f in enumerate(fractions)}
    colours = model_colours(summary["model"].unique())
    styles = pretrain_styles(summary["pretrain"].unique())
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(sorted(colours))}
    entries = sorted({(m, p) for m, p in zip(s["model"], s["pretrain"])})
    dodge = np.linspace(-0.12, 0.12, len(entries)) if len(entries) > 1 else [0.0]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(metrics),
            len(test_sets),
            squeeze=False,
            sharex=True,
            figsize=(3.0 * len(test_sets) + 0.4, 2.3 * len(metrics) + 0.3),
        )
        for col, test_set in enumerate(test_sets):
            for row, metric in enumerate(metrics):
                ax = axes[row][col]
                fam = s[(s["test_set"] == test_set) & (s["metric"] == metric)]
                for k, (model, pre) in enumerate(entries):
                    e = fam[(fam["model"] == model) & (fam["pretrain"] == pre)].sort_values("fraction")
                    if e.empty:
                        continue
                    x = np.array([xpos[f] for f in e["fraction"]]) + dodge[k]
                    y = e["mean"].to_numpy(dtype=float)
                    lo, hi = e["ci_low"].to_numpy(dtype=float), e["ci_high"].to_numpy(dtype=float)
                    err = np.clip(np.vstack([y - lo, hi - y]), 0, None)  # 1-ulp mean differences
                    ax.errorbar(
                        x,
                        y,
                        yerr=np.where(np.isfinite(err), err, 0),
                        color=colours[model],
                        linestyle=styles[pre],
                        marker="none",
                        capsize=1.5,
                        elinewidth=0.7,
                    )
                    # filled marker: the best entry or not significantly worse; hollow: significantly worse
                    worse = e["marker"].eq("†").to_numpy()
                    for sel, face in ((~worse, colours[model]), (worse, "white")):
                        if sel.any():
                            ax.plot(
                                x[sel],
                                y[sel],
                                linestyle="none",
                                marker=markers[model],
                                color=colours[model],
                                markerfacecolor=face,
                                markeredgewidth=0.8,
                                zorder=3,
                            )
                    failed = _failed(e)
                    if failed.any():  # a failed fit: its point is no ordinary result
                        ax.plot(
                            x[failed],
                            y[failed],
                            linestyle="none",
                            marker="x",
                            color=_FAILED_COLOUR,
                            markersize=7,
                            markeredgewidth=1.4,
                            zorder=4,
                        )
                ax.set_xticks(range(len(fractions)), [fraction_label(f) for f in fractions])
                ax.set_xlim(-0.4, len(fractions) - 0.6)
                if row == 0:
                    ax.set_title(test_set)
                if col == 0:
                    arrow = {"higher": " ↑", "lower": " ↓"}.get(stats.metric_direction(metric) or "", "")
                    ax.set_ylabel(stats.metric_label(metric) + arrow)
                if row == len(metrics) - 1:
                    ax.set_xlabel("labelled training data")
        model_row = [
            Line2D([], [], color=colours[m], marker=markers[m], label=m)
            for m in sorted({m for m, _ in entries})
        ]
        style_row = [
            Line2D([], [], color="0.2", linestyle=styles[p], label=stats.pretrain_label(p))
            for p in pretrain_order([p for _, p in entries])
        ]
        style_row.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="white",
                linestyle="none",
                label="significantly worse than the best (Wilcoxon, Holm)",
            )
        )
        if _failed(s).any():
            style_row.append(
                Line2D(
                    [],
                    [],
                    color=_FAILED_COLOUR,
                    marker="x",
                    linestyle="none",
                    label="failed fit (a seed predicted no lesion anywhere)",
                )
            )
        rows = [model_row[i : i + 6] for i in range(0, len(model_row), 6)] + [style_row]
        handles, ncol = _legend_rows(rows)
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)
        units = "patients" if unit == "patient" else "scans"
        fig.suptitle(
            f"Trained on {train_dataset}: mean over test {units} and 95 % CI (bootstrap; t below "
            f"{stats.SMALL_N} {units})",
            fontsize=9,
        )
        fig.set_layout_engine("constrained")
    return fig


def cd_diagram(
    family: pd.DataFrame,
    pairs: pd.DataFrame,
    alpha: float = 0.05,
    title: str = "",
) -> Figure | None:
    """Critical-difference diagram of one family: mean ranks (1 = best) and bars joining entries whose
    Holm-adjusted Wilcoxon tests are not significant. Failed fits are left out (their pairs are not in
    the Holm family; their mean ranks come after every working entry's). None with fewer than two
    ranked entries."""
    fam = family.dropna(subset=["mean_rank"])
    if "failed_fit" in fam.columns:
        fam = fam[~fam["failed_fit"].astype(bool)]
    if len(fam) < 2:
        return None
    labels = list(fam["entry"])
    ranks = pd.Series(fam["mean_rank"].to_numpy(dtype=float), index=labels)
    sig = pd.DataFrame(1.0, index=labels, columns=labels)
    for _, r in pairs.iterrows():
        if r["entry_a"] in sig.index and r["entry_b"] in sig.index and np.isfinite(r["p_holm"]):
            sig.loc[r["entry_a"], r["entry_b"]] = sig.loc[r["entry_b"], r["entry_a"]] = float(r["p_holm"])
    import scikit_posthocs as sp

    colours = model_colours(fam["model"])
    palette = {e: colours[m] for e, m in zip(fam["entry"], fam["model"])}
    n = len(labels)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.24 * math.ceil(n / 2) + 0.12 * n))
        sp.critical_difference_diagram(
            ranks,
            sig,
            alpha=alpha,
            ax=ax,
            color_palette=palette,
            label_fmt_left="{label} ({rank:.2f})",
            label_fmt_right="({rank:.2f}) {label}",
            marker_props={"s": 14},
            elbow_props={"linewidth": 0.9},
            crossbar_props={"linewidth": 2.2, "color": "0.15"},
            label_props={"fontsize": 7.5},
        )
        k = len(labels)
        ax.set_xlim(0.5, k + 0.5)
        ax.set_xticks(range(1, k + 1))
        ax.tick_params(axis="x", labelsize=7)
        note = f"mean rank (1 = best); bars: no significant difference (Wilcoxon, Holm, α = {alpha:g})"
        ax.set_title((title + "\n" if title else "") + note, fontsize=8)
        fig.set_layout_engine("constrained")
    return fig


def confusion_rgb(pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) image: TP green, TN black, FP red, FN blue."""
    pred, mask = np.asarray(pred, bool), np.asarray(mask, bool)
    rgb = np.zeros((*mask.shape, 3), dtype=np.float32)
    for name, where in (("TP", pred & mask), ("FP", pred & ~mask), ("FN", ~pred & mask)):
        rgb[where] = OVERLAY_COLOURS[name]
    return rgb


def _dice(pred: np.ndarray, mask: np.ndarray) -> float:
    total = int(pred.sum()) + int(mask.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & mask).sum()) / total


def overlay_grid(
    cases: Sequence[str],
    entries: Sequence[tuple[str, str]],
    load: Callable[[str, tuple[str, str]], Prediction | str],
    title: str = "",
) -> Figure:
    """Example predictions: one row per case, the first column the background image (or the reference
    mask), then one column per entry coloured TP green / TN black / FP red / FN blue, with its Dice.

    ``load(case, entry)`` returns a :class:`Prediction`, or a short reason why there is none.
    """
    ncol = len(entries) + 1
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(
            len(cases), ncol, squeeze=False, figsize=(1.55 * ncol + 0.2, 1.25 * len(cases) + 0.75)
        )
        for i, case in enumerate(cases):
            shown_background = False
            for j, entry in enumerate(entries, start=1):
                ax = axes[i][j]
                item = load(case, entry)
                if isinstance(item, str):
                    ax.text(
                        0.5,
                        0.5,
                        item,
                        ha="center",
                        va="center",
                        fontsize=6,
                        wrap=True,
                        transform=ax.transAxes,
                        color="0.4",
                    )
                else:
                    ax.imshow(confusion_rgb(item.pred, item.mask), interpolation="nearest", aspect="auto")
                    ax.text(
                        0.03,
                        0.05,
                        f"Dice {_dice(item.pred, item.mask):.2f}",
                        color="white",
                        fontsize=6,
                        transform=ax.transAxes,
                        va="bottom",
                    )
                    if not shown_background:
                        bg = item.background if item.background is not None else item.mask.astype(float)
                        axes[i][0].imshow(bg, cmap="gray", interpolation="nearest", aspect="auto")
                        if item.background is not None:
                            axes[i][0].contour(
                                item.mask, levels=[0.5], colors=[(1.0, 0.85, 0.0)], linewidths=0.6
                            )
                        shown_background = True
                if i == 0:
                    ax.set_title(stats.entry_label(*entry), fontsize=7)
            axes[i][0].set_ylabel(str(case), fontsize=7)
            if i == 0:
                axes[i][0].set_title("en-face, reference", fontsize=7)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
        patches = [
            Patch(facecolor=OVERLAY_COLOURS[k], edgecolor="0.5", label=k) for k in ("TP", "TN", "FP", "FN")
        ]
        fig.legend(handles=patches, loc="outside lower center", ncol=4, frameon=False)
        if title:
            fig.suptitle(title, fontsize=8.5)
        fig.set_layout_engine("constrained")
    return fig


def rank_blobs(dist: pd.DataFrame, full_order: Sequence[str], title: str = "") -> Figure | None:
    """Ranking stability (challengeR's blob plot): one row per entry (board order), one column per rank;
    the area of a blob is the share of bootstrap resamples giving the entry that rank. None when empty."""
    if dist is None or dist.empty:
        return None
    entries = [e for e in full_order if e in dist.index]
    k = dist.shape[1]
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(5.5, 1.0 + 0.24 * len(entries)))
        for i, e in enumerate(entries):
            shares = dist.loc[e].to_numpy(dtype=float)
            ranks = np.asarray(dist.columns, dtype=float)
            ok = shares > 0
            ax.scatter(ranks[ok], np.full(ok.sum(), i), s=160 * shares[ok], color="0.25", linewidths=0)
            ax.plot([i + 1], [i], marker="x", color="#b42318", markersize=4, linestyle="none")
        ax.set_yticks(range(len(entries)), entries)
        ax.invert_yaxis()
        ax.set_xticks(range(1, k + 1))
        ax.set_xlim(0.4, k + 0.6)
        ax.set_xlabel("rank in bootstrap resamples (blob area: share); × rank on the full data")
        if title:
            ax.set_title(title, fontsize=8)
        fig.set_layout_engine("constrained")
    return fig


def accuracy_vs_cost(
    summary: pd.DataFrame, cost: pd.DataFrame, train_dataset: str, metric: str, test_set: str
) -> Figure | None:
    """Mean ``metric`` on ``test_set`` against the mean fine-tuning time per run, one panel per label
    fraction, one point per entry (colour: model, marker fill: scratch or pre-trained, area: parameters).
    None when no entry has both numbers."""
    s = summary[
        (summary["train_dataset"] == train_dataset)
        & (summary["test_set"] == test_set)
        & (summary["metric"] == metric)
    ]
    c = cost[cost["train_dataset"] == train_dataset] if not cost.empty else cost
    if s.empty or c.empty:
        return None
    merged = s.merge(c, on=["train_dataset", "fraction", "model", "pretrain"], how="inner")
    merged = merged[np.isfinite(merged["fit_s"].astype(float)) & np.isfinite(merged["mean"].astype(float))]
    if merged.empty:
        return None
    fractions = sorted(merged["fraction"].unique())
    colours = model_colours(summary["model"].unique())
    params = merged["parameters"].astype(float)
    scale = float(np.nanmax(params)) if np.isfinite(params).any() else math.nan
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(fractions), squeeze=False, sharey=True, figsize=(2.6 * len(fractions) + 0.6, 2.5)
        )
        for ax, fraction in zip(axes[0], fractions):
            sub = merged[merged["fraction"] == fraction]
            for _, r in sub.iterrows():
                p = float(r["parameters"])
                size = 12 + 70 * (p / scale) if math.isfinite(p) and math.isfinite(scale) else 20
                face = colours[r["model"]] if r["pretrain"] == "none" else "white"
                ax.scatter(
                    [r["fit_s"]],
                    [r["mean"]],
                    s=size,
                    color=colours[r["model"]],
                    facecolors=face,
                    linewidths=1.0,
                    zorder=3,
                )
            ax.set_xscale("log")
            ax.set_title(fraction_label(fraction))
            ax.set_xlabel("fine-tuning time per run (s)")
        arrow = {"higher": " ↑", "lower": " ↓"}.get(stats.metric_direction(metric) or "", "")
        axes[0][0].set_ylabel(stats.metric_label(metric) + arrow)
        handles = [
            Line2D([], [], color=colours[m], marker="o", linestyle="none", label=m)
            for m in sorted(merged["model"].unique())
        ]
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="white",
                linestyle="none",
                label="pre-trained (hollow); area: parameters",
            )
        )
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
        fig.suptitle(f"Trained on {train_dataset}, tested on {test_set}: accuracy against cost", fontsize=9)
        fig.set_layout_engine("constrained")
    return fig
