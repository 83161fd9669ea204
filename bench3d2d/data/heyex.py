"""Heidelberg Spectralis ``.vol`` files through eyepy → ``Scan``.

* Volume: eyepy's B-scans ``(n_bscans, depth, width)`` with eyepy's display intensity transform
  (HEYEX-like contrast, 8-bit) scaled to [0, 1], reordered to ``(H, W, D)``; B-scan ``h`` is the
  file's B-scan ``h``.
* Spacing ``(h, w, d)`` in mm: the header's B-scan distance, A-scan width (``scale_x``) and axial
  pixel height (``scale_y``). The spacing implied by the B-scan positions is recorded in ``meta``.
* SLO: the NIR localizer, cropped to the scanned region given by each B-scan's start/end positions
  (mm on the localizer) and area-averaged onto the B-scan grid, so that row ``h`` lies under
  B-scan ``h`` (docs/protocol.md §2.5). If the header's SLO pixel size puts the scanned region outside a
  localizer that was resized (as in anonymised exports), the scale implied by the field of view
  (``field_size_slo`` degrees × 0.302 mm/°) is tried next; ``meta["slo_status"]`` says which.
  Raster scans whose B-scans are parallel to the image axes use exact
  box overlaps; rotated patterns use a Gaussian pre-filter and bilinear sampling. If the scanned
  region is not inside the localizer, ``localizer="auto"`` (default) keeps ``slo=None`` and records
  why in ``meta["slo_status"]`` (with a warning); ``"require"`` raises; ``"skip"`` never reads it.
* BM surface: the file's BM layer (index 1 in the VOL layer table) when present, else None.
* Patient id: the header's patient id (else the internal ``pid``, else the file stem); eye from the
  scan position; visits numbered per (patient, eye) by visit date within a dataset.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench3d2d.data.records import DataError, Dataset, Scan, ScanRef

__all__ = ["localizer_to_bscan_grid", "read_vol", "read_vol_dataset", "read_vol_header"]

#: Spectralis: a 30° field is 768 px × 0.0118 mm ≈ 9.06 mm (used only when the header's SLO scale does
#: not place the scanned region inside a resized localizer).
MM_PER_DEGREE = 768 * 0.0118 / 30

_UNSUPPORTED_PATTERNS = {1: "a single line scan", 2: "a circular scan", 5: "a radial (star) scan"}


def _fmt():
    from eyepy.io.he.vol_reader import vol_format

    return vol_format


def read_vol_header(path: str | Path) -> dict:
    """The fixed header of a ``.vol`` file (no B-scans): patient, eye, visit date, sizes, scales."""
    import construct as cs

    path = Path(path)
    fmt = _fmt()
    names = [s.name for s in fmt.subcons]
    header = cs.Struct(*fmt.subcons[: names.index("prog_id") + 1])
    try:
        with open(path, "rb") as f:
            h = header.parse_stream(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"Heidelberg .vol file not found: {path}") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable Heidelberg .vol file (header: {exc})") from None
    if not str(h.version).startswith(("HSF-OCT", "ep-v")):
        raise DataError(f"{path}: not a Heidelberg .vol file (version field {h.version!r})")
    return {k: h[k] for k in names[: names.index("prog_id") + 1] if not k.startswith("_")}


def _patient_id(header: dict, path: Path) -> str:
    pid = str(header.get("patient_id", "")).strip("\x00 ").strip()
    if pid and pid.lower() != "unknown":
        return pid
    if header.get("pid"):
        return f"pid{header['pid']}"
    return path.stem


def _eye(header: dict) -> str:
    pos = str(header.get("scan_position", "")).strip("\x00 ").upper()
    return pos if pos in ("OD", "OS") else "unknown"


def _interval_weights(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """(len(lo), n) weights: overlap of [lo_i, hi_i] with pixel j = [j − ½, j + ½], normalised."""
    j = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(hi[:, None], j + 0.5) - np.maximum(lo[:, None], j - 0.5), 0, None)
    total = overlap.sum(axis=1, keepdims=True)
    return overlap / np.where(total > 0, total, 1)


def localizer_to_bscan_grid(
    localizer: np.ndarray,
    starts_mm: np.ndarray,
    ends_mm: np.ndarray,
    scale_xy_mm: tuple[float, float],
    n_ascans: int,
    tolerance_px: float = 1.0,
) -> np.ndarray:
    """Resample the localizer onto the B-scan grid ``(n_bscans, n_ascans)`` from B-scan positions.

    ``starts_mm``/``ends_mm`` are ``(n_bscans, 2)`` (x, y) in mm on the localizer; pixel ``j`` is
    centred at ``j · scale``. Raises ``ValueError`` if the scanned region leaves the image.
    """
    loc = np.asarray(localizer, dtype=np.float64)
    sx, sy = float(scale_xy_mm[0]), float(scale_xy_mm[1])
    starts = np.asarray(starts_mm, dtype=np.float64) / (sx, sy)
    ends = np.asarray(ends_mm, dtype=np.float64) / (sx, sy)
    H, W = len(starts), int(n_ascans)
    t = np.arange(W) / max(W - 1, 1)
    cols = starts[:, 0:1] + (ends[:, 0:1] - starts[:, 0:1]) * t  # (H, W) centre positions (px)
    rows = starts[:, 1:2] + (ends[:, 1:2] - starts[:, 1:2]) * t
    # cell extents: half an A-scan step along the B-scan, half a B-scan step across
    step_a = (ends - starts) / max(W - 1, 1)
    step_b = np.gradient(starts, axis=0) if H > 1 else np.zeros_like(starts)
    ext_c = 0.5 * (np.abs(step_a[:, 0:1]) + np.abs(step_b[:, 0:1]))
    ext_r = 0.5 * (np.abs(step_a[:, 1:2]) + np.abs(step_b[:, 1:2]))
    lo_r, hi_r, lo_c, hi_c = rows - ext_r, rows + ext_r, cols - ext_c, cols + ext_c
    n_r, n_c = loc.shape
    tol = tolerance_px
    if (
        lo_r.min() < -0.5 - tol
        or hi_r.max() > n_r - 0.5 + tol
        or lo_c.min() < -0.5 - tol
        or hi_c.max() > n_c - 0.5 + tol
    ):
        raise ValueError(
            f"the scanned region (rows {lo_r.min():.0f}..{hi_r.max():.0f}, columns {lo_c.min():.0f}.."
            f"{hi_c.max():.0f} px) lies outside the {n_r}x{n_c} localizer"
        )
    axis_aligned = (
        np.allclose(starts[:, 1], ends[:, 1])
        and np.allclose(starts[:, 0], starts[0, 0])
        and np.allclose(ends[:, 0], ends[0, 0])
    )
    if axis_aligned:
        wr = _interval_weights(lo_r[:, 0], hi_r[:, 0], n_r)  # (H, n_r)
        wc = _interval_weights(lo_c[0], hi_c[0], n_c)  # (W, n_c)
        out = wr @ loc @ wc.T
    else:
        sigma = (max(0.0, (2 * float(ext_r.mean()) - 1) / 2), max(0.0, (2 * float(ext_c.mean()) - 1) / 2))
        smooth = ndimage.gaussian_filter(loc, sigma, mode="nearest")
        out = ndimage.map_coordinates(smooth, [rows, cols], order=1, mode="nearest")
    return out.astype(np.float32)


def _open_vol(path: Path):
    """The parsed file of a raster ``.vol`` (eyepy's ``parsed_file``); unreadable files and scan
    patterns that are not a volume raise ``DataError``."""
    from eyepy.io.he import HeVolReader

    try:
        pf = HeVolReader(path).parsed_file
    except Exception as exc:
        raise DataError(
            f"{path}: truncated or unreadable Heidelberg .vol file ({type(exc).__name__}: {exc})"
        ) from None
    pattern = int(pf.scan_pattern)
    if pattern in _UNSUPPORTED_PATTERNS and len(pf.bscans) < 2:
        raise DataError(
            f"{path}: {_UNSUPPORTED_PATTERNS[pattern]} is not a volume (need a raster of B-scans)"
        )
    if pattern in (2, 5):
        raise DataError(f"{path}: {_UNSUPPORTED_PATTERNS[pattern]} cannot be arranged as an (H, W, D) volume")
    return pf


def _display_volume(pf, path: Path) -> np.ndarray:
    """The B-scans with eyepy's display transform, scaled to [0, 1], as float32 ``(H, W, D)``."""
    from eyepy.core.utils import from_vol_intensity

    raw = np.stack([np.asarray(b.data, dtype=np.float32) for b in pf.bscans], axis=0)  # (H, D, W)
    if raw.size == 0:
        raise DataError(f"{path}: no B-scans")
    display = from_vol_intensity(raw.copy())  # uint8, HEYEX-like contrast; invalid samples -> 0
    return np.ascontiguousarray(np.transpose(display, (0, 2, 1)), dtype=np.float32) / np.float32(255)


def _spacing(
    pf, starts: np.ndarray, ends: np.ndarray, H: int, W: int
) -> tuple[tuple[float, float, float], float, float]:
    """Spacing ``(h, w, d)`` in mm from the header, and the (h, w) spacing implied by the positions."""
    h_mm = float(pf.distance)
    pos_h = float(np.median(np.linalg.norm(np.diff(starts, axis=0), axis=1))) if H > 1 else 0.0
    pos_w = float(np.median(np.linalg.norm(ends - starts, axis=1))) / max(W - 1, 1)
    if not h_mm > 0:
        h_mm = pos_h if pos_h > 0 else float(pf.scale_x)
    return (h_mm, float(pf.scale_x), float(pf.scale_y)), pos_h, pos_w


def _read_slo(
    pf, starts: np.ndarray, ends: np.ndarray, W: int, localizer: str, path: Path, meta: dict
) -> np.ndarray | None:
    """The localizer on the B-scan grid (header scale first, then the field of view), or None.

    Records ``slo_status`` (and ``slo_scale_mm``) in ``meta``; ``localizer="require"`` raises when
    neither scale places the scanned region inside the localizer, ``"auto"`` warns.
    """
    if localizer == "skip":
        meta["slo_status"] = "skipped"
        return None
    loc = np.asarray(pf.localizer)
    top = 255.0 if loc.dtype == np.uint8 or loc.max() > 1 else 1.0
    scales = [("header", (float(pf.scale_x_slo), float(pf.scale_y_slo)))]
    if int(pf.field_size_slo) > 0:  # a resized localizer keeps the field of view, not the pixel size
        fov = int(pf.field_size_slo) * MM_PER_DEGREE
        scales.append(("field of view", (fov / loc.shape[1], fov / loc.shape[0])))
    errors = []
    for label, scale in scales:
        try:
            slo = localizer_to_bscan_grid(loc, starts, ends, scale, W)
        except ValueError as exc:
            errors.append(f"{label} scale {scale[0]:.4f} mm/px: {exc}")
            continue
        meta["slo_status"] = f"cropped to the scanned region ({label} scale) and resampled to the B-scan grid"
        meta["slo_scale_mm"] = list(scale)
        return np.clip(slo / np.float32(top), 0, 1).astype(np.float32)
    reason = "; ".join(errors)
    if localizer == "require":
        raise DataError(f"{path}: localizer: {reason}")
    meta["slo_status"] = f"not used: {reason}"
    warnings.warn(f"{path}: SLO localizer not used: {reason}", RuntimeWarning, stacklevel=3)
    return None


def _read_bm(pf, D: int) -> np.ndarray | None:
    """The file's BM layer (index 1 of the layer table) as float32 ``(H, W)`` rows, NaN where invalid."""
    layers = [np.asarray(b.layer_segmentations, dtype=np.float64) for b in pf.bscans]
    if not all(len(seg) > 1 for seg in layers):
        return None
    bm_rows = np.stack([seg[1] for seg in layers]).astype(np.float64)  # (H, W)
    bm_rows[(bm_rows >= 3.0e38) | (bm_rows < 0) | (bm_rows > D)] = np.nan
    return bm_rows.astype(np.float32) if np.isfinite(bm_rows).any() else None


def read_vol(
    path: str | Path,
    *,
    localizer: str = "auto",
    scan_id: str | None = None,
    patient_id: str | None = None,
    visit: int = 1,
) -> Scan:
    """Read one ``.vol`` file into a ``Scan`` (see the module docstring for every rule)."""
    if localizer not in ("auto", "require", "skip"):
        raise ValueError(f"localizer must be 'auto', 'require' or 'skip', got {localizer!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Heidelberg .vol file not found: {path}")
    header = read_vol_header(path)
    pf = _open_vol(path)
    volume = _display_volume(pf, path)
    H, W, D = volume.shape
    starts = np.array([(b.start_x, b.start_y) for b in pf.bscans], dtype=np.float64)
    ends = np.array([(b.end_x, b.end_y) for b in pf.bscans], dtype=np.float64)
    spacing, pos_h, pos_w = _spacing(pf, starts, ends, H, W)
    meta: dict = {
        "source": "heyex-vol",
        "file": str(path),
        "scan_pattern": int(pf.scan_pattern),
        "visit_date": str(header.get("visit_date")),
        "exam_time": str(header.get("exam_time")),
        "spacing_from_positions_mm": [pos_h, pos_w],
        "localizer_shape": list(np.asarray(pf.localizer).shape),
        "field_size_deg": int(pf.field_size_slo),
    }
    if pos_w > 0 and abs(pos_w - spacing[1]) > 0.05 * spacing[1]:
        meta["spacing_note"] = (
            f"A-scan spacing from the B-scan positions ({pos_w:.5f} mm) differs from the header's "
            f"scale_x ({spacing[1]:.5f} mm); the header value is used"
        )
    slo = _read_slo(pf, starts, ends, W, localizer, path, meta)
    bm = _read_bm(pf, D)
    meta["bm_status"] = "from the file's BM layer" if bm is not None else "no BM layer in the file"
    return Scan(
        scan_id=scan_id or path.stem,
        patient_id=patient_id or _patient_id(header, path),
        eye=_eye(header),
        visit=int(visit),
        volume=volume,
        spacing_mm=spacing,
        slo=slo,
        bm_surface=bm,
        meta=meta,
    ).check(str(path))


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def read_vol_dataset(paths: Sequence[str | Path], name: str = "heyex", localizer: str = "auto") -> Dataset:
    """A lazy dataset of ``.vol`` files: headers are read now, volumes when a scan is loaded."""
    files = [Path(p) for p in paths]
    if not files:
        raise DataError(f"dataset {name!r}: no .vol files given")
    headers = []
    for p in files:
        h = read_vol_header(p)
        headers.append((p, h, _patient_id(h, p), _eye(h)))
    # visits: order files of the same (patient, eye) by visit date, exam time, file name
    order = sorted(
        headers,
        key=lambda r: (r[2], r[3], str(r[1].get("visit_date")), str(r[1].get("exam_time")), str(r[0])),
    )
    visit_of: dict[Path, int] = {}
    counts: dict[tuple[str, str], int] = {}
    for p, _h, pid, eye in order:
        counts[(pid, eye)] = counts.get((pid, eye), 0) + 1
        visit_of[p] = counts[(pid, eye)]
    items = [
        ScanRef(
            scan_id=p.stem,
            patient_id=pid,
            eye=eye,
            visit=visit_of[p],
            loader=partial(
                read_vol, p, localizer=localizer, scan_id=p.stem, patient_id=pid, visit=visit_of[p]
            ),
            meta={"source": "heyex-vol", "file": str(p)},
            fingerprint=_fingerprint(p),
            where=str(p),
        )
        for p, _h, pid, eye in headers
    ]
    where = "|".join(sorted(str(p.resolve()) for p in files))
    return Dataset(name, items, namespace=f"heyex_{name}_{hashlib.sha1(where.encode()).hexdigest()[:10]}")
