"""The OCTA-500 layout (Li et al., "IPN-V2 and OCTA-500", Medical Image Analysis 2024) → ``Scan``.

Our reading of the published layout (both spellings seen in the wild are accepted)::

    <root>/OCTA_6mm/ (or OCTA_6M)  and  <root>/OCTA_3mm/ (or OCTA_3M)
        OCT/<subject>/<n>.bmp            B-scans, n = 1..N in natural order (not "1, 10, 100, 2")
        OCTA/<subject>/<n>.bmp           the angiography volume, same layout
        Projection Maps/ (or Projection_Maps, ProjectionMaps)/OCT(FULL)/<subject>.bmp, OCTA(ILM_OPL)/...
        GT_FAZ/<subject>.bmp, GT_LargeVessel/... (ground truth inside the subset folder), or
    <root>/Label/GT_FAZ/<subject>.bmp   (the later release: one Label folder for both subsets;
    <root>/Label/GT_Layers/<subject>.mat  also Label/Label/...; GT_Layers holds "Layer" (6, N, W):
                                          ILM, IPL, OPL, IS/OS, RPE, BM depth rows per A-scan)

* A B-scan BMP is depth × width (640 × 400 for 6 mm); the volume is ``(H = N, W = width, D = 640)``.
* En-face maps (ground truth, projections) are stored with rows = A-scan index and columns =
  B-scan index (IPN-V2 code, chaosallen/IPNV2_pytorch data_process/BatchDataReader.py: the label is
  cropped ``[startx:endx, starty:endy]`` together with the volume's A-scan and B-scan axes), so they
  are transposed onto our ``(H, W)`` grid.
* Spacing: the field (6 or 3 mm, from the folder name, or ``extent_mm``) over W and H, and 2 mm
  over the depth (OCTA-500 paper: 6 × 6 × 2 mm and 3 × 3 × 2 mm).
* ``mask`` is the ground truth named by ``label`` (default ``GT_FAZ``); every other binary ``GT_*``
  folder becomes an extra mask (``GT_LargeVessel`` → ``extra_masks["largevessel"]``); projection
  maps become ``extra_maps`` (``"OCT(FULL)"``...), scaled to [0, 1]. BM comes from ``GT_Layers``
  when present. Subjects are patients (one eye each, laterality not given: ``eye = "unknown"``).
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np

from bench3d2d.data.imageio import binary_mask, natural_key, read_image
from bench3d2d.data.preprocess import image_to_unit
from bench3d2d.data.records import DataError, Dataset, Scan, ScanRef

__all__ = ["find_subsets", "looks_like_octa500", "read_octa500"]

SUBSET_NAMES = {"octa_6mm": 6.0, "octa_6m": 6.0, "octa_3mm": 3.0, "octa_3m": 3.0}
PROJECTION_DIRS = ("Projection Maps", "Projection_Maps", "ProjectionMaps", "Projection maps")
DEPTH_MM = 2.0
IMAGE_EXT = (".bmp", ".png", ".tif", ".tiff")


def _is_subset(folder: Path) -> bool:
    return (folder / "OCT").is_dir() or (folder / "OCTA").is_dir()


def find_subsets(root: Path) -> list[tuple[Path, float | None]]:
    """(subset folder, field in mm or None) for a root holding OCTA_6mm/OCTA_3M..., or the subset itself."""
    root = Path(root)
    if _is_subset(root):
        return [(root, SUBSET_NAMES.get(root.name.lower()))]
    found: list[tuple[Path, float | None]] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name.lower() in SUBSET_NAMES and _is_subset(child):
            found.append((child, SUBSET_NAMES[child.name.lower()]))
    return found


def looks_like_octa500(path: Path) -> bool:
    """True for an OCTA-500 root or subset folder (an ``OCT`` folder of per-subject B-scan folders)."""
    try:
        return bool(find_subsets(Path(path)))
    except OSError:
        return False


def _gt_dirs(subset: Path) -> dict[str, Path]:
    """Ground-truth folders by name (``GT_FAZ``...), searched in the subset and the release's Label folder."""
    candidates = [
        subset,
        subset / "GroundTruth",
        subset / "Label",
        subset.parent / "Label",
        subset.parent / "Label" / "Label",
    ]
    found: dict[str, Path] = {}
    for base in candidates:
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and d.name.upper().startswith("GT_") and d.name not in found:
                    found[d.name] = d
    return found


def _projection_dirs(subset: Path) -> dict[str, Path]:
    for name in PROJECTION_DIRS:
        base = subset / name
        if base.is_dir():
            return {d.name: d for d in sorted(base.iterdir()) if d.is_dir()}
    return {}


def _subject_file(folder: Path, subject: str) -> Path | None:
    for ext in IMAGE_EXT:
        p = folder / f"{subject}{ext}"
        if p.is_file():
            return p
    return None


def _read_bscans(folder: Path, where: str) -> np.ndarray:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT), key=lambda p: natural_key(p.name)
    )
    if not files:
        raise DataError(f"{where}: no B-scan images in {folder}")
    first = read_image(files[0], where)
    vol = np.empty((len(files), first.shape[1], first.shape[0]), dtype=np.float32)  # (H, W, D)
    for i, f in enumerate(files):
        img = first if i == 0 else read_image(f, where)
        if img.shape != first.shape:
            raise DataError(
                f"{where}: B-scan {f} has shape {img.shape}, the first ({files[0].name}) has {first.shape}"
            )
        vol[i] = image_to_unit(img, f"{where}: {f}").T
    return vol


def _read_bm(gt_layers: Path | None, subject: str, hw: tuple[int, int], where: str) -> np.ndarray | None:
    if gt_layers is None:
        return None
    path = gt_layers / f"{subject}.mat"
    if not path.is_file():
        return None
    from scipy.io import loadmat

    try:
        layers = np.asarray(loadmat(str(path))["Layer"], dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{where}: {path}: unreadable layer file ({type(exc).__name__}: {exc})") from None
    if layers.ndim != 3 or layers.shape[0] < 6 or layers.shape[1:] != hw:
        raise DataError(f"{where}: {path}: 'Layer' has shape {layers.shape}, expected (6, {hw[0]}, {hw[1]})")
    return layers[5]


def _load_subject(
    subset: Path, subject: str, field_mm: float, modality: str, label: str | None, where: str
) -> Scan:
    volume = _read_bscans(subset / modality / subject, where)
    H, W, D = volume.shape
    gts = _gt_dirs(subset)
    masks: dict[str, np.ndarray] = {}
    for name, folder in gts.items():
        if name.upper() == "GT_LAYERS":
            continue
        f = _subject_file(folder, subject)
        if f is None:
            continue
        img = read_image(f, where).T
        if img.shape != (H, W):
            raise DataError(
                f"{where}: {f} has shape {img.T.shape} (transposed {img.shape}), volume en-face is {(H, W)}"
            )
        if name == label:
            masks[name] = binary_mask(img, f"{where}: {f}")
        else:
            try:
                masks[name] = binary_mask(img, f"{where}: {f}")
            except DataError:
                continue  # multi-class maps such as GT_CAVF are not masks
    if label is not None and label not in masks:
        raise DataError(
            f"{where}: no ground truth {label!r} for subject {subject} (found: {', '.join(gts) or 'none'})"
        )
    maps = {}
    for name, folder in _projection_dirs(subset).items():
        f = _subject_file(folder, subject)
        if f is not None:
            img = image_to_unit(read_image(f, where), f"{where}: {f}").T
            if img.shape == (H, W):
                maps[name] = img.astype(np.float32)
    layers_dir = next((p for n, p in gts.items() if n.upper() == "GT_LAYERS"), None)
    return Scan(
        scan_id=f"octa500-{subject}",
        patient_id=subject,
        eye="unknown",
        visit=1,
        volume=volume,
        spacing_mm=(field_mm / H, field_mm / W, DEPTH_MM / D),
        mask=masks.get(label) if label else None,
        extra_masks={n[3:].lower(): m for n, m in masks.items() if n != label},
        extra_maps=maps,
        bm_surface=_read_bm(layers_dir, subject, (H, W), where),
        meta={"source": "octa500", "subset": subset.name, "modality": modality, "label": label},
    ).check(where)


def read_octa500(
    path: str | Path,
    label: str | None = "GT_FAZ",
    modality: str = "OCT",
    extent_mm: float | None = None,
    name: str = "octa500",
) -> Dataset:
    """A lazy dataset of every subject found under an OCTA-500 root or subset folder."""
    root = Path(path)
    if modality not in ("OCT", "OCTA"):
        raise ValueError(f"modality must be 'OCT' or 'OCTA', got {modality!r}")
    subsets = find_subsets(root)
    if not subsets:
        raise DataError(
            f"{root}: not an OCTA-500 folder (no OCT/<subject>/ B-scan folders, no OCTA_6mm/OCTA_3M)"
        )
    items = []
    for subset, field in subsets:
        field_mm = extent_mm or field
        if field_mm is None:
            raise DataError(f"{subset}: cannot tell the field size from the folder name; pass extent_mm")
        vol_dir = subset / modality
        if not vol_dir.is_dir():
            raise DataError(f"{subset}: no {modality} folder")
        for subject_dir in sorted(
            (p for p in vol_dir.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)
        ):
            subject = subject_dir.name
            where = f"{subset.name}/{modality}/{subject}"
            items.append(
                ScanRef(
                    scan_id=f"octa500-{subject}",
                    patient_id=subject,
                    eye="unknown",
                    visit=1,
                    loader=partial(_load_subject, subset, subject, float(field_mm), modality, label, where),
                    meta={"source": "octa500", "subset": subset.name},
                    fingerprint=_dir_fingerprint(subject_dir),
                    where=where,
                )
            )
    key = hashlib.sha1(f"{root.resolve()}|{label}|{modality}|{extent_mm}".encode()).hexdigest()[:10]
    return Dataset(name, items, namespace=f"octa500_{key}")


def _dir_fingerprint(folder: Path) -> str:
    stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]
