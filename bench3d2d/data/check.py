"""Check a dataset the way a sweep will read it, and report every problem before any training.

:func:`check_dataset` collects problems instead of stopping at the first: a manifest's missing,
miscased or unknown columns (with a did-you-mean), an empty manifest, duplicate scan ids, missing
files and bad header values row by row; too few patients for the patient-wise split; no annotated
scan; scans without a modality a planned SSL pre-training needs; and, with ``load_scans``,
everything reading the pixels finds (unreadable files, shapes, spacing, NaN voxels, mask values).
Each problem is one line naming the file and row. ``bench3d2d data check`` and ``run --dry-run``
print them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench3d2d.data.manifest import column_problems, load_manifest_rows, manifest_row, read_scan
from bench3d2d.data.records import DataError
from bench3d2d.data.splits import MIN_SPLIT_PATIENTS

__all__ = ["CheckOptions", "CheckReport", "check_dataset", "find_datasets"]

#: The en-face maps an SSL pre-training reconstructs, by pre-training variant.
MODALITIES = ("slo", "faf")


@dataclass(frozen=True)
class CheckOptions:
    """What to check: ``size``/``seed`` of a registered dataset, the ``modalities`` a planned
    pre-training needs on every scan, and whether to read every scan's pixels (``load_scans``)."""

    size: str = "quick"
    seed: int = 0
    modalities: tuple[str, ...] = ()
    load_scans: bool = True


@dataclass
class CheckReport:
    """The problems found in one dataset (one line each), notes, and counts."""

    target: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _is_manifest(target: str) -> Path | None:
    """The manifest file ``target`` names (a ``.csv``/``.json`` file or a folder holding one)."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix.lower() in (".csv", ".json"):
        return path
    if path.is_dir():
        for name in ("manifest.csv", "manifest.json"):
            if (path / name).is_file():
                return path / name
    return None


def find_datasets(path: str | Path) -> list[str]:
    """``path`` itself when it is a dataset, else every ``.csv``/``.json`` manifest below it (sorted)."""
    from bench3d2d.data.registry import list_datasets

    p = Path(path).expanduser()
    if str(path) in list_datasets() or not p.is_dir() or _is_manifest(str(p)):
        return [str(path)]
    from bench3d2d.data.octa500 import looks_like_octa500

    if any(c.suffix.lower() == ".vol" for c in p.iterdir()) or looks_like_octa500(p):
        return [str(path)]
    found = sorted(str(c) for c in p.rglob("*") if c.is_file() and c.suffix.lower() in (".csv", ".json"))
    return found or [str(path)]


def check_dataset(target: str, options: CheckOptions | None = None) -> CheckReport:
    """Every problem of one dataset (registered name, manifest, or dataset folder)."""
    options = options or CheckOptions()
    manifest = _is_manifest(target)
    report = CheckReport(str(target))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if manifest is not None:
            _check_manifest(manifest, options, report)
        else:
            _check_loaded(target, options, report)
    report.notes += [str(w.message) for w in caught if str(w.message) not in report.problems]
    report.problems = merge_rows(report.problems)
    return report


_ROW_LINE = re.compile(r"^(?P<file>.+?) row (?P<row>\d+)(?: \(scan '.*?'\))?: (?P<msg>.*)$", re.S)


def merge_rows(problems: list[str]) -> list[str]:
    """One line for a problem that many rows share (``FILE rows 1, 2, 3 and 5 more: message``)."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for line in problems:
        m = _ROW_LINE.match(line)
        key = (m["file"], m["msg"]) if m else (line, "")
        groups.setdefault(key, []).append((m["row"] if m else "", line))
    out = []
    for (head, msg), hits in groups.items():
        if len(hits) == 1:
            out.append(hits[0][1])
        else:
            rows = [row for row, _ in hits]
            more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
            out.append(f"{head} rows {', '.join(rows[:3])}{more}: {msg}")
    return out


def _check_manifest(path: Path, options: CheckOptions, report: CheckReport) -> None:
    """Columns, rows, files, patients, annotations and modalities of a manifest (pixels if asked)."""
    try:
        rows = load_manifest_rows(path)
    except (DataError, FileNotFoundError) as exc:
        report.problems.append(str(exc))
        return
    if not rows:
        report.problems.append(f"{path}: the manifest lists no scans (empty dataset)")
        return
    report.counts["scans"] = len(rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    fatal, other = column_problems(columns, path)
    report.problems += fatal + other
    if fatal:  # a required column is missing: every row would repeat it
        return
    specs = _row_specs(rows, path, report)
    _check_patients([s["patient_id"] for s in specs], str(path), report)
    report.counts["annotated"] = sum("mask" in s["paths"] for s in specs)
    for modality in options.modalities:
        lacking = [s["scan_id"] for s in specs if modality not in s["paths"]]
        report.counts[modality] = len(specs) - len(lacking)
        if lacking:
            report.problems.append(_modality_problem(path, modality, lacking, len(rows)))
    if report.counts["annotated"] == 0:
        report.problems.append(f"{path}: no row has a 'mask' file: nothing to train or test on")
    if options.load_scans:
        for spec in specs:
            try:
                read_scan(spec, path)
            except DataError as exc:
                report.problems.append(str(exc))


def _row_specs(rows: list[dict[str, Any]], path: Path, report: CheckReport) -> list[dict[str, Any]]:
    """Each row's checked header (a bad row is a problem and left out); duplicate ids are problems."""
    specs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        try:
            spec = manifest_row(row, i, path)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        scan_id = spec["scan_id"]
        if scan_id in seen:
            report.problems.append(
                f"{path} row {i}: duplicate scan id {scan_id!r} (first in row {seen[scan_id]})"
            )
            continue
        seen[spec["scan_id"]] = i
        specs.append(spec)
    return specs


def _check_patients(patients: Iterable[str], where: str, report: CheckReport) -> None:
    n = len(set(patients))
    report.counts["patients"] = n
    if n < MIN_SPLIT_PATIENTS:
        report.problems.append(
            f"{where}: {n} patient(s); the patient-wise split needs at least {MIN_SPLIT_PATIENTS} "
            "(one each for training, validation and test)"
        )


def _modality_problem(where: Path | str, modality: str, lacking: list[str], total: int) -> str:
    shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
    return (
        f"{where}: {len(lacking)} of {total} scans have no {modality!r} image ({shown}); "
        f"SSL-{modality.upper()} pre-training on it needs one for every scan"
    )


def _check_loaded(target: str, options: CheckOptions, report: CheckReport) -> None:
    """A registered dataset, ``.vol`` files or an OCTA-500 folder: load it (and its scans if asked)."""
    from bench3d2d.data.registry import load_dataset

    try:
        ds = load_dataset(target, size=options.size, seed=options.seed)
    except (DataError, LookupError, FileNotFoundError, ValueError) as exc:
        report.problems.append(str(exc))
        return
    report.counts["scans"] = len(ds)
    _check_patients(ds.patient_ids(), str(target), report)
    if not options.load_scans:
        return
    lacking: dict[str, list[str]] = {m: [] for m in options.modalities}
    annotated = 0
    for item in ds.items:
        try:
            scan = item.load() if hasattr(item, "load") else item
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        annotated += scan.mask is not None
        for modality in options.modalities:
            if getattr(scan, modality, None) is None:
                lacking[modality].append(scan.scan_id)
    report.counts["annotated"] = annotated
    for modality, ids in lacking.items():
        report.counts[modality] = len(ds) - len(ids)
        if ids:
            report.problems.append(_modality_problem(target, modality, ids, len(ds)))
