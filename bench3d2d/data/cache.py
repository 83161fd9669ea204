"""The prepared cache: ``prepare(dataset, depth, cache_dir)`` → ``PreparedDataset`` (memory-mapped .npy).

Layout::

    <cache_dir>/<namespace>-<key>/            key = sha256(namespace + preprocessing parameters)[:16]
        index.json                            case ids in order (written last, atomically)
        <case>/volume.npy                     float32 (H, W, depth), flattened, z-scored per B-scan
        <case>/mask.npy, slo.npy, faf.npy     float32 (H, W); faf.npy holds 1 - FAF
        <case>/mask@<rater>.npy, map@<name>.npy
        <case>/meta.json                      patient, eye, visit, spacing after preprocessing, ...

Each case folder is written into a temporary folder and renamed into place, so a failure (bad input,
interruption) leaves no partial entry; the temporary folder of a killed process is removed by the
next ``prepare`` of that cache folder. Writers of one cache folder take turns under its claim file
(``.claim.json``, the library's one lock scheme), so that concurrent workers never race. A second
``prepare`` with the same source and parameters reads the cache without loading the scans; a
changed parameter gives a new key, hence a new folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench3d2d._io import atomic_write_json, make_temp_dir, remove_stale_temps, removed_on_failure
from bench3d2d._io import safe_name as _safe
from bench3d2d._lock import ClaimLock
from bench3d2d.data.preprocess import preprocess_scan
from bench3d2d.data.records import DataError, Dataset, Scan, ScanRef

__all__ = ["PREP_VERSION", "PreparedDataset", "cache_key", "open_prepared", "prepare"]

#: Bump when preprocessing changes in a way that invalidates cached entries.
PREP_VERSION = 1


def cache_key(namespace: str, depth: int, flatten: bool) -> str:
    """Hash of the source namespace and every preprocessing parameter (16 hex digits)."""
    params = {"namespace": namespace, "depth": int(depth), "flatten": bool(flatten), "version": PREP_VERSION}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


#: The claim file of a cache folder (held while a process writes entries or the index).
CLAIM_NAME = ".claim.json"


def _target_file(key: str) -> str:
    return key.replace(":", "@") + ".npy"


def _file_target(name: str) -> str:
    return name[: -len(".npy")].replace("@", ":")


class PreparedDataset:
    """Preprocessed scans in the cache; arrays are read memory-mapped on demand."""

    def __init__(self, name: str, key: str, root: Path, case_ids: list[str], metas: dict[str, dict]):
        self.name = name
        self.key = key
        self.root = Path(root)
        self.case_ids = list(case_ids)
        self._meta = metas

    def __len__(self) -> int:
        return len(self.case_ids)

    def __repr__(self) -> str:
        return f"PreparedDataset({self.name!r}, {len(self)} cases, key={self.key})"

    def _dir(self, case_id: str) -> Path:
        if case_id not in self._meta:
            raise KeyError(f"prepared dataset {self.name!r} has no case {case_id!r}")
        return self.root / _safe(case_id)

    def volume(self, case_id: str) -> np.ndarray:
        """The preprocessed volume, float32 (H, W, depth), memory-mapped read-only."""
        return np.load(self._dir(case_id) / "volume.npy", mmap_mode="r")

    def target(self, case_id: str, key: str) -> np.ndarray | None:
        """A 2-D target float32 (H, W): ``mask``, ``mask:<rater>``, ``slo``, ``faf`` (= 1 − FAF), or None."""
        path = self._dir(case_id) / _target_file(key)
        if key not in self._meta[case_id]["targets"]:
            return None
        return np.load(path, mmap_mode="r")

    def targets(self, case_id: str) -> list[str]:
        """The target keys available for one case."""
        return list(self._meta[case_id]["targets"])

    def has_target(self, key: str) -> bool:
        """Whether every case has target ``key``."""
        return bool(self.case_ids) and all(key in self._meta[c]["targets"] for c in self.case_ids)

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """(h, w, d) in mm after preprocessing (d updated for the depth resize)."""
        return tuple(self._meta[case_id]["spacing_mm"])  # type: ignore[return-value]

    def shape(self, case_id: str) -> tuple[int, int, int]:
        """(H, W, depth) of the prepared volume."""
        return tuple(self._meta[case_id]["shape"])  # type: ignore[return-value]

    def patient(self, case_id: str) -> str:
        """The case's patient id."""
        return self._meta[case_id]["patient_id"]

    def meta(self, case_id: str) -> dict:
        """All metadata of a case (patient, eye, visit, spacing, raw shape, flattening, source meta)."""
        return dict(self._meta[case_id])

    def patient_ids(self) -> list[str]:
        """Sorted unique patient ids."""
        return sorted({self._meta[c]["patient_id"] for c in self.case_ids})

    def cases_of(self, patient_ids: Iterable[str]) -> list[str]:
        """Case ids (dataset order) belonging to the given patients."""
        wanted = set(patient_ids)
        return [c for c in self.case_ids if self._meta[c]["patient_id"] in wanted]

    def subset(self, case_ids: Iterable[str]) -> PreparedDataset:
        """A view on some cases (order as given); unknown ids are an error."""
        ids = list(case_ids)
        unknown = [c for c in ids if c not in self._meta]
        if unknown:
            raise KeyError(f"prepared dataset {self.name!r} has no cases {unknown[:5]}")
        return PreparedDataset(self.name, self.key, self.root, ids, {c: self._meta[c] for c in ids})

    def subset_patients(self, patient_ids: Iterable[str]) -> PreparedDataset:
        """A view on the cases of some patients."""
        return self.subset(self.cases_of(patient_ids))


def _entry_valid(case_dir: Path, fingerprint: str) -> dict | None:
    meta_file = case_dir / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("fingerprint", "") != fingerprint or meta.get("version") != PREP_VERSION:
        return None
    if not all((case_dir / _target_file(k)).is_file() for k in meta.get("targets", [])):
        return None
    return meta if (case_dir / "volume.npy").is_file() else None


def _load_item(item: Scan | ScanRef) -> Scan:
    if isinstance(item, ScanRef):
        return item.load()
    return item.check()


def _write_case(root: Path, item: Scan | ScanRef, depth: int, flatten: bool, fingerprint: str) -> dict:
    scan = _load_item(item)  # raises DataError before anything is written
    arrays = preprocess_scan(scan, depth=depth, flatten=flatten)
    meta = {
        "case_id": scan.scan_id,
        "patient_id": scan.patient_id,
        "eye": scan.eye,
        "visit": int(scan.visit),
        "shape": list(arrays.volume.shape),
        "spacing_mm": list(arrays.spacing_mm),
        "targets": sorted(arrays.targets),
        "fingerprint": fingerprint,
        "version": PREP_VERSION,
        **arrays.meta,
        "source": json.loads(json.dumps(scan.meta, default=str)),
    }
    final = root / _safe(scan.scan_id)
    tmp = make_temp_dir(final)
    try:
        np.save(tmp / "volume.npy", arrays.volume)
        for key, arr in arrays.targets.items():
            np.save(tmp / _target_file(key), arr.astype(np.float32))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)  # a stale entry (source changed)
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished the same entry first: keep theirs if it is valid
            if _entry_valid(final, fingerprint) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def prepare(
    dataset: Dataset, depth: int, cache_dir: str | os.PathLike, flatten: bool = True
) -> PreparedDataset:
    """Preprocess every scan of ``dataset`` (docs/protocol.md §2) into the cache and return the prepared view.

    Cached entries with the same source and parameters are reused without loading the scan. Bad
    input raises ``DataError`` naming the file or row; no partial entry is left behind.
    """
    if len(dataset) == 0:
        raise DataError(f"dataset {dataset.name!r} is empty: nothing to prepare")
    if int(depth) < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    key = cache_key(dataset.namespace, int(depth), flatten)
    root = Path(cache_dir) / f"{_safe(dataset.namespace, 40)}-{key}"
    remove_stale_temps(root, depth=1)  # orphans of killed writers (their writer is gone)
    metas = _valid_entries(root, dataset)
    if metas is not None and _indexed(root, list(metas)):
        return PreparedDataset(dataset.name, key, root, list(metas), metas)  # nothing to write
    with (
        removed_on_failure(root),
        ClaimLock(root / CLAIM_NAME, heartbeat=30.0, note=f"prepare {dataset.name}"),
    ):
        metas = {}
        for item in dataset.items:
            fingerprint = getattr(item, "fingerprint", "")
            meta = _entry_valid(root / _safe(item.scan_id), fingerprint)
            if meta is None:
                meta = _write_case(root, item, int(depth), flatten, fingerprint)
            metas[item.scan_id] = meta
        _update_index(root, _index_record(dataset, key, int(depth), flatten), list(metas))
    return PreparedDataset(dataset.name, key, root, list(metas), metas)


def _valid_entries(root: Path, dataset: Dataset) -> dict[str, dict] | None:
    """The metadata of every case when all are cached and valid, else None (without writing)."""
    if not root.is_dir():
        return None
    metas = {}
    for item in dataset.items:
        meta = _entry_valid(root / _safe(item.scan_id), getattr(item, "fingerprint", ""))
        if meta is None:
            return None
        metas[item.scan_id] = meta
    return metas


def _indexed(root: Path, case_ids: list[str]) -> bool:
    try:
        known = set(json.loads((root / "index.json").read_text()).get("cases", []))
    except (OSError, ValueError, AttributeError):
        return False
    return set(case_ids) <= known


def _index_record(dataset: Dataset, key: str, depth: int, flatten: bool) -> dict:
    return {
        "name": dataset.name,
        "namespace": dataset.namespace,
        "key": key,
        "depth": int(depth),
        "flatten": bool(flatten),
        "version": PREP_VERSION,
    }


def _update_index(root: Path, index: dict, case_ids: list[str]) -> None:
    """Record the cases present in this cache folder (union with earlier runs; views share a folder)."""
    path = root / "index.json"
    known: list[str] = []
    if path.is_file():
        try:
            known = list(json.loads(path.read_text()).get("cases", []))
        except (OSError, json.JSONDecodeError):
            known = []
    merged = known + [c for c in case_ids if c not in set(known)]
    atomic_write_json(path, {**index, "cases": merged}, sort_keys=False)


def open_prepared(root: str | os.PathLike, case_ids: Iterable[str] | None = None) -> PreparedDataset:
    """Reopen a prepared cache folder (``<cache_dir>/<namespace>-<key>``) without the source."""
    root = Path(root)
    try:
        index = json.loads((root / "index.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{root}: no index.json, not a prepared cache folder") from None
    ids = list(case_ids) if case_ids is not None else index["cases"]
    metas = {c: _read_meta(root / _safe(c)) for c in ids}
    return PreparedDataset(index["name"], index["key"], root, ids, metas)


def _read_meta(case_dir: Path) -> dict:
    try:
        return json.loads((case_dir / "meta.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{case_dir}: prepared case missing (meta.json not found)") from None
