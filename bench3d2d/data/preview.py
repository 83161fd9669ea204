"""Dataset summaries: a Fig. 1-style preview (B-scan with mask, en-face mask, SLO, FAF) and statistics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench3d2d._io import atomic_write
from bench3d2d.data.records import Dataset, Scan

__all__ = ["dataset_stats", "pick_scan", "preview_figure"]


def pick_scan(dataset: Dataset, scan_id: str | None = None) -> Scan:
    """The scan to show: ``scan_id`` if given, else the first annotated scan with the largest lesion."""
    if scan_id is not None:
        item = dataset.header(scan_id)
        return dataset.scans[dataset.scan_ids.index(item.scan_id)]
    best, best_area, voxels = None, -1, 0
    for i, scan in enumerate(dataset.scans):
        area = -1 if scan.mask is None else int(scan.mask.sum())
        if area > best_area:
            best, best_area = scan, area
        voxels += scan.volume.size
        if i >= 11 or (best_area > 0 and voxels > 20_000_000):  # a handful, fewer of large scans
            break
    assert best is not None
    return best


def preview_figure(scan: Scan, out: str | os.PathLike, title: str = "", dpi: int = 110) -> Path:
    """Write a PNG: a B-scan through the lesion with the mask underneath, en-face mask, SLO, FAF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    H, W, D = scan.volume.shape
    h_mm, w_mm, d_mm = scan.spacing_mm
    mask = scan.mask if scan.mask is not None else np.zeros((H, W), np.uint8)
    row = int(np.argmax(mask.sum(axis=1))) if mask.any() else H // 2
    panels = [("en-face mask", mask.astype(float), "gray")]
    if scan.slo is not None:
        panels.append(("SLO", scan.slo, "gray"))
    if scan.faf is not None:
        panels.append(("FAF", scan.faf, "gray"))
    fig = plt.figure(figsize=(3.2 * (1 + len(panels)) + 1.0, 3.4), dpi=dpi)
    grid = fig.add_gridspec(1, 1 + len(panels), width_ratios=[1.6] + [1] * len(panels), wspace=0.25)
    ax = fig.add_subplot(grid[0, 0])
    bscan = scan.volume[row].T  # (D, W): depth downwards
    ax.imshow(bscan, cmap="gray", aspect=0.6 * W / D, interpolation="nearest")  # depth stretched
    if mask.any():
        cols = np.flatnonzero(mask[row])
        ax.scatter(cols, np.full(len(cols), D - 2), marker="s", s=6, c="tab:red", linewidths=0)
    ax.set_title(f"B-scan {row} (mask in red)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for i, (name, img, cmap) in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, aspect=h_mm / w_mm, interpolation="nearest")
        ax.axhline(row, color="tab:red", lw=0.6, alpha=0.7)
        if name != "en-face mask" and mask.any():
            ax.contour(mask, levels=[0.5], colors="tab:orange", linewidths=0.6)
        ax.set_title(name + (" (mask contour)" if name != "en-face mask" and mask.any() else ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{scan.scan_id}  ({H}×{W}×{D}, {h_mm:.3f}×{w_mm:.4f}×{d_mm:.4f} mm)", fontsize=10)
    try:
        fmt = out.suffix.lstrip(".").lower() or "png"
        atomic_write(out, lambda fh: fig.savefig(fh, format=fmt, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return out


def dataset_stats(dataset: Dataset) -> dict:
    """Counts, shapes, spacing and lesion-area statistics (loads every scan)."""
    shapes, spacings, areas, raters2 = set(), set(), [], 0
    n_annot, modalities = 0, {"slo": 0, "faf": 0, "bm": 0}
    eyes = set()
    for scan in dataset.scans:
        shapes.add(scan.shape)
        spacings.add(tuple(round(float(s), 6) for s in scan.spacing_mm))
        eyes.add((scan.patient_id, scan.eye))
        modalities["slo"] += scan.slo is not None
        modalities["faf"] += scan.faf is not None
        modalities["bm"] += scan.bm_surface is not None
        if scan.mask is not None:
            n_annot += 1
            areas.append(float(scan.mask.sum()) * scan.spacing_mm[0] * scan.spacing_mm[1])
        raters2 += bool(scan.extra_masks)
    a = np.asarray(areas) if areas else np.zeros(0)
    return {
        "name": dataset.name,
        "patients": len(dataset.patient_ids()),
        "eyes": len(eyes),
        "scans": len(dataset),
        "annotated_scans": n_annot,
        "scans_with_extra_masks": raters2,
        "with_slo": modalities["slo"],
        "with_faf": modalities["faf"],
        "with_bm_surface": modalities["bm"],
        "shapes": sorted(list(s) for s in shapes),
        "spacing_mm": sorted(list(s) for s in spacings),
        "lesion_area_mm2": {
            "mean": float(a.mean()) if a.size else None,
            "median": float(np.median(a)) if a.size else None,
            "min": float(a.min()) if a.size else None,
            "max": float(a.max()) if a.size else None,
            "empty_masks": int((a == 0).sum()),
        },
    }
