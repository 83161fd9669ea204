"""Folder + manifest: users' own data ("bring your own data"; docs/data.md has a worked example).

A manifest is a CSV file (one row per scan) or a JSON file (a list of rows, or
``{"defaults": {...}, "scans": [...]}`` where ``defaults`` fill every row). Columns / keys:

=================  ========  =============================================================
``scan_id``        required  unique per manifest
``patient_id``     required  (``patient`` also accepted) — splits are patient-wise
``eye``            optional  ``OD``, ``OS`` (also ``R``/``L``, ``right``/``left``); default ``unknown``
``visit``          optional  integer, default 1
``volume``         required  path to ``.npy``, ``.nii``/``.nii.gz`` or ``.tif`` (3-D)
``volume_axes``    optional  axis order of the stored volume, default ``HWD`` (e.g. ``HDW``: B-scans
                             stored as depth × width images, as in device exports)
``slo``, ``faf``   optional  2-D images (``.png``/``.bmp``/``.jpg``/``.npy``/``.tif``) on the B-scan grid
``mask``           optional  2-D binary mask (0/1 or 0/255) of the first rater
``mask_<name>``    optional  more masks, e.g. ``mask_rater2`` → ``extra_masks["rater2"]``
``spacing_h``/``_w``/``_d``   mm; or ``spacing`` = ``"h,w,d"`` (JSON: a list). NIfTI header as fallback
``bm``             optional  2-D ``.npy``/``.tif`` with Bruch's membrane depth index per A-scan
``resample_2d``    optional  ``true``: 2-D maps of another size are resampled to (H, W) (SLO/FAF by
                             area averaging, masks by nearest neighbour, docs/protocol.md §2); default
                             ``false``: a size mismatch is an error
=================  ========  =============================================================

Paths are relative to the manifest's folder. A path that leaves that folder (``../``, or an absolute
path elsewhere) is accepted with a ``DataWarning`` naming the rows; ``confine_paths=True`` (a
``load_dataset`` option) makes it an error. A UTF-8 byte-order mark (Excel's "CSV UTF-8") is
accepted. Missing files, duplicate ids, bad eyes/visits/spacing
are reported when the manifest is read; unreadable volumes, shape mismatches, NaN/inf voxels and
non-binary masks when a scan is loaded (``prepare`` loads each scan before writing anything).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench3d2d.data.evalgrid import resize_nearest
from bench3d2d.data.imageio import binary_mask, read_image, read_volume
from bench3d2d.data.preprocess import area_resample, image_to_unit
from bench3d2d.data.records import DataError, Dataset, DataWarning, Scan, ScanRef

__all__ = [
    "column_problems",
    "load_manifest_rows",
    "manifest_row",
    "read_manifest",
    "read_scan",
    "write_manifest",
]

_EYES = {"od": "OD", "r": "OD", "right": "OD", "re": "OD", "os": "OS", "l": "OS", "left": "OS", "le": "OS"}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f", "none"}


def load_manifest_rows(path: Path) -> list[dict[str, Any]]:
    """The manifest's rows as dicts (JSON defaults applied); a malformed file is a ``DataError``."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(data, dict):
                defaults = dict(data.get("defaults", {}))
                scans = data.get("scans")
                if not isinstance(scans, list):
                    raise DataError(f"{path}: JSON manifest needs a list under 'scans'")
                rows = [{**defaults, **r} for r in scans]
            elif isinstance(data, list):
                rows = list(data)
            else:
                raise DataError(f"{path}: JSON manifest must be a list of scans or an object with 'scans'")
            bad = [i for i, r in enumerate(rows, start=1) if not isinstance(r, dict)]
            if bad:
                raise DataError(f"{path}: scan entry {bad[0]} is not an object")
        else:
            raise DataError(f"{path}: a manifest must be .csv or .json")
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable manifest ({type(exc).__name__}: {exc})") from None
    return rows


def _text(row: dict, key: str, default: str = "") -> str:
    v = row.get(key, default)
    return "" if v is None else str(v).strip()


def _flag(value: Any, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DataError(f"{where}: {key} must be true or false, got {value!r}")


def _spacing(row: dict, where: str) -> tuple[float, float, float] | None:
    value = row.get("spacing")
    parts: list[Any]
    if value not in (None, ""):
        parts = list(value) if isinstance(value, list | tuple) else str(value).replace(";", ",").split(",")
    elif any(_text(row, k) for k in ("spacing_h", "spacing_w", "spacing_d")):
        parts = [row.get(k, "") for k in ("spacing_h", "spacing_w", "spacing_d")]
    else:
        return None
    try:
        sp = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise DataError(f"{where}: spacing must be three numbers in mm (h, w, d), got {parts!r}") from None
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise DataError(f"{where}: spacing must be three positive numbers in mm (h, w, d), got {parts!r}")
    return sp  # type: ignore[return-value]


#: Columns that hold a file path (besides ``mask_<name>``).
FILE_COLUMNS = ("volume", "slo", "faf", "mask", "bm")
#: Every column a manifest row may have (besides ``mask_<name>``); names are case-sensitive.
KNOWN_COLUMNS = (
    "scan_id", "patient_id", "patient", "eye", "visit", "volume", "volume_axes", "slo", "faf", "mask",
    "bm", "spacing", "spacing_h", "spacing_w", "spacing_d", "resample_2d",
)  # fmt: skip
#: Required columns; each tuple lists the accepted spellings.
REQUIRED_COLUMNS = (("scan_id",), ("patient_id", "patient"), ("volume",))


def _did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for a miscased or close name, else ``""``."""
    lower = {c.lower(): c for c in choices}
    close = (
        [lower[name.lower()]]
        if name.lower() in lower
        else difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    )
    return f"; did you mean {close[0]!r}?" if close else ""


def column_problems(columns: list[str], manifest: Path) -> tuple[list[str], list[str]]:
    """Problems with a manifest's column names, one line each: missing required columns (first list:
    nothing can be read), and miscased or misspelt columns that would be ignored (second list).
    Names are case-sensitive; a column with no close known name is taken as the user's own."""
    fatal = []
    for spellings in REQUIRED_COLUMNS:
        if not any(c in columns for c in spellings):
            hint = _did_you_mean(spellings[0], columns)
            also = f" (or {spellings[1]!r})" if len(spellings) > 1 else ""
            fatal.append(f"{manifest}: missing column {spellings[0]!r}{also}{hint}")
    ignored = []
    for col in columns:
        if col in KNOWN_COLUMNS or col.startswith("mask_"):
            continue
        hint = _did_you_mean(col, KNOWN_COLUMNS)
        if hint:
            ignored.append(f"{manifest}: column {col!r} is not read (column names are case-sensitive){hint}")
    return fatal, ignored


def manifest_row(row: dict, index: int, manifest: Path) -> dict:
    """One row's checked header fields and file paths (no image is read); a bad row is a ``DataError``
    naming the manifest, the row and every missing file."""
    return _row_spec(row, index, manifest)


def read_scan(spec: dict, manifest: Path) -> Scan:
    """Read the files of one row (as :func:`manifest_row` returns it) into a checked ``Scan``."""
    return _load_scan(spec, manifest)


def _row_spec(row: dict, index: int, manifest: Path) -> dict:
    """Validate one row's header fields and paths (no image is read)."""
    where = f"{manifest} row {index}"
    scan_id = _text(row, "scan_id")
    if not scan_id:
        raise DataError(f"{where}: missing scan_id")
    where = f"{manifest} row {index} (scan {scan_id!r})"
    patient = _text(row, "patient_id") or _text(row, "patient")
    if not patient:
        raise DataError(f"{where}: missing patient_id")
    eye_raw = _text(row, "eye")
    eye = "unknown" if eye_raw.lower() in ("", "unknown", "na", "nan") else _EYES.get(eye_raw.lower())
    if eye is None:
        raise DataError(f"{where}: eye must be OD or OS (or R/L, right/left), got {eye_raw!r}")
    visit_raw = _text(row, "visit") or "1"
    try:
        visit = int(float(visit_raw))
        if float(visit_raw) != visit:
            raise ValueError
    except ValueError:
        raise DataError(f"{where}: visit must be an integer, got {visit_raw!r}") from None
    axes = (_text(row, "volume_axes") or "HWD").upper()
    if sorted(axes) != ["D", "H", "W"]:
        raise DataError(f"{where}: volume_axes must be a permutation of H, W, D, got {axes!r}")
    base = manifest.parent
    paths: dict[str, Path] = {}
    if not _text(row, "volume"):
        raise DataError(f"{where}: missing volume path")
    missing = []
    for key in row:
        if key in FILE_COLUMNS or key.startswith("mask_"):
            value = _text(row, key)
            if not value:
                continue
            p = Path(value).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                missing.append(f"{key} file not found: {p}")
            paths[key] = p
    if missing:
        raise DataError(f"{where}: {'; '.join(missing)}")
    return {
        "where": where,
        "scan_id": scan_id,
        "patient_id": patient,
        "eye": eye,
        "visit": visit,
        "axes": axes,
        "paths": paths,
        "spacing": _spacing(row, where),
        "resample": _flag(row.get("resample_2d", False), where, "resample_2d"),
        "row": index,
    }


def _load_scan(spec: dict, manifest: Path) -> Scan:
    """Read one manifest row's files into a checked ``Scan``."""
    where, paths = spec["where"], spec["paths"]
    raw, zooms = read_volume(paths["volume"], where)
    perm = [spec["axes"].index(a) for a in "HWD"]
    volume = np.transpose(raw, perm)
    if not np.issubdtype(volume.dtype, np.number) or volume.dtype.kind == "c":
        raise DataError(f"{where}: {paths['volume']}: volume must hold real numbers, got {volume.dtype}")
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    bad = ~np.isfinite(volume)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        n_nan, n_inf = int(np.isnan(volume).sum()), int(np.isinf(volume).sum())
        raise DataError(
            f"{where}: {paths['volume']}: {n_nan} NaN and {n_inf} inf voxels (first at (h, w, d) = {first})"
        )
    spacing = spec["spacing"]
    if spacing is None:
        if zooms is None:
            raise DataError(f"{where}: no spacing given (spacing_h/_w/_d or spacing) and the volume has none")
        spacing = tuple(zooms[i] for i in perm)
    H, W, _ = volume.shape

    def fit(arr: np.ndarray, key: str, is_mask: bool) -> np.ndarray:
        if arr.shape == (H, W):
            return arr
        if not spec["resample"]:
            raise DataError(
                f"{where}: {key} {paths[key]} has shape {arr.shape}, the volume's en-face shape (H, W) is "
                f"{(H, W)} (set resample_2d to resample it)"
            )
        return resize_nearest(arr, (H, W)) if is_mask else area_resample(arr, (H, W))

    maps = {}
    for key in ("slo", "faf"):
        if key in paths:
            img = image_to_unit(read_image(paths[key], where), f"{where}: {key} {paths[key]}")
            maps[key] = np.clip(fit(img, key, False), 0, 1).astype(np.float32)
    masks = {}
    for key in [k for k in paths if k == "mask" or k.startswith("mask_")]:
        m = binary_mask(read_image(paths[key], where), f"{where}: {key} {paths[key]}")
        masks[key] = fit(m, key, True)
    bm = None
    if "bm" in paths:
        bm = np.asarray(read_image(paths["bm"], where), dtype=np.float32)
        if bm.shape != (H, W):
            raise DataError(f"{where}: bm {paths['bm']} has shape {bm.shape}, expected (H, W) = {(H, W)}")
    return Scan(
        scan_id=spec["scan_id"],
        patient_id=spec["patient_id"],
        eye=spec["eye"],
        visit=spec["visit"],
        volume=volume,
        spacing_mm=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        slo=maps.get("slo"),
        faf=maps.get("faf"),
        mask=masks.get("mask"),
        extra_masks={k[len("mask_") :]: v for k, v in masks.items() if k != "mask"},
        bm_surface=bm,
        meta={"source": "manifest", "manifest": str(manifest), "row": spec["row"]},
    ).check(where)


def _fingerprint(spec: dict) -> str:
    parts = [json.dumps({k: v for k, v in spec.items() if k != "paths"}, sort_keys=True, default=str)]
    for key, p in sorted(spec["paths"].items()):
        st = p.stat()
        parts.append(f"{key}={p.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def read_manifest(path: str | Path, name: str | None = None, confine_paths: bool = False) -> Dataset:
    """A lazy dataset from a manifest: headers and file existence are checked now, pixels on load.

    A file outside the manifest's folder gives a ``DataWarning``, or a ``DataError`` with
    ``confine_paths``.
    """
    path = Path(path).expanduser()
    rows = load_manifest_rows(path)
    if not rows:
        raise DataError(f"{path}: the manifest lists no scans (empty dataset)")
    fatal, ignored = column_problems(list(dict.fromkeys(k for r in rows for k in r)), path)
    if fatal:
        raise DataError(fatal[0])
    for line in ignored:
        warnings.warn(line, DataWarning, stacklevel=2)
    specs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        spec = _row_spec(row, i, path)
        if spec["scan_id"] in seen:
            first = seen[spec["scan_id"]]
            raise DataError(f"{path} row {i}: duplicate scan id {spec['scan_id']!r} (first in row {first})")
        seen[spec["scan_id"]] = i
        specs.append(spec)
    items = [
        ScanRef(
            scan_id=s["scan_id"],
            patient_id=s["patient_id"],
            eye=s["eye"],
            visit=s["visit"],
            loader=partial(_load_scan, s, path),
            meta={"source": "manifest", "manifest": str(path), "row": s["row"]},
            fingerprint=_fingerprint(s),
            where=s["where"],
        )
        for s in specs
    ]
    _check_confined(path, specs, confine_paths)
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    info = {"manifest_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return Dataset(
        name or path.parent.name or path.stem, items, namespace=f"manifest_{path.stem}_{key}", info=info
    )


def _check_confined(path: Path, specs: list[dict], confine: bool) -> None:
    """Warn (or, with ``confine``, raise) when a row's file lies outside the manifest's folder."""
    base = path.parent.resolve()
    outside = [
        (s["row"], key, p)
        for s in specs
        for key, p in sorted(s["paths"].items())
        if not p.resolve().is_relative_to(base)
    ]
    if not outside:
        return
    shown = "; ".join(f"row {row} {key} {p}" for row, key, p in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    message = f"{path}: {len(outside)} file(s) outside the manifest's folder {base}: {shown}{more}"
    if confine:
        raise DataError(message + " (confine_paths=True)")
    warnings.warn(message + " (pass confine_paths=True to refuse them)", DataWarning, stacklevel=3)


def write_manifest(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as a CSV (columns: the union of keys, in first-seen order) or JSON manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"scans": rows}, indent=2, default=str) + "\n")
        return path
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: (",".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in r.items()}
            )
    return path
