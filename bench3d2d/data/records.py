"""The ``Scan`` record every source produces, and ``Dataset``, an ordered collection of scans.

A ``Dataset`` may hold scans lazily (``ScanRef``: header plus a loader), so that splitting a large
cohort or a folder of files needs only the headers; a scan is loaded when ``dataset.scans[i]``
(or iteration) asks for it. Loading checks the scan (``Scan.check``) and raises ``DataError``,
which names the file or manifest row and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EYES", "DataError", "DataWarning", "Dataset", "Scan", "ScanRef", "ScanSequence"]

#: Allowed values of ``Scan.eye``: right eye, left eye, laterality not known (e.g. OCTA-500).
EYES = ("OD", "OS", "unknown")


class DataError(ValueError):
    """Bad input data; the message names the file or manifest row and what is wrong."""


class DataWarning(UserWarning):
    """Input that is accepted but may surprise (e.g. a manifest path outside the manifest's folder)."""


@dataclass
class Scan:
    """One OCT volume with its co-registered en-face maps, in the library's axis order.

    ``volume`` is float32 ``(H, W, D)``: H = B-scan index, W = A-scan index, D = depth (last).
    ``slo``/``faf`` are float32 ``(H, W)`` in [0, 1] on the B-scan grid (FAF *not* inverted);
    ``mask`` is uint8 {0, 1} ``(H, W)`` (first rater); ``extra_masks`` holds other raters or labels
    by name; ``extra_maps`` other continuous en-face maps in [0, 1] (e.g. OCTA projections);
    ``bm_surface`` the depth index of Bruch's membrane per A-scan (NaN where unknown).
    """

    scan_id: str
    patient_id: str
    eye: str
    visit: int
    volume: np.ndarray
    spacing_mm: tuple[float, float, float]
    slo: np.ndarray | None = None
    faf: np.ndarray | None = None
    mask: np.ndarray | None = None
    extra_masks: dict[str, np.ndarray] = field(default_factory=dict)
    bm_surface: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    extra_maps: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, D)`` of the volume."""
        return tuple(int(s) for s in self.volume.shape)  # type: ignore[return-value]

    def check(self, where: str = "") -> Scan:
        """Validate types, shapes and values; raise ``DataError`` naming ``where``; return self."""
        loc = f"{where}: " if where else f"scan {self.scan_id!r}: "
        if not str(self.scan_id):
            raise DataError(f"{loc}empty scan id")
        if not str(self.patient_id):
            raise DataError(f"{loc}empty patient id")
        if self.eye not in EYES:
            raise DataError(f"{loc}eye must be one of {', '.join(EYES)}, got {self.eye!r}")
        vol = self.volume
        if not isinstance(vol, np.ndarray) or vol.ndim != 3:
            got = getattr(vol, "shape", type(vol).__name__)
            raise DataError(f"{loc}volume must be a 3-D array (H, W, D), got {got}")
        if min(vol.shape) < 1:
            raise DataError(f"{loc}volume has an empty axis: shape {vol.shape}")
        if not np.issubdtype(vol.dtype, np.number) or np.issubdtype(vol.dtype, np.complexfloating):
            raise DataError(f"{loc}volume must hold real numbers, got dtype {vol.dtype}")
        if np.issubdtype(vol.dtype, np.floating):
            bad = ~np.isfinite(vol)
            if bad.any():
                n_nan, n_inf = int(np.isnan(vol).sum()), int(np.isinf(vol).sum())
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise DataError(
                    f"{loc}volume has {n_nan} NaN and {n_inf} inf voxels (first at (h, w, d) = {first})"
                )
        sp = tuple(self.spacing_mm)
        if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
            raise DataError(f"{loc}spacing_mm must be three positive numbers (h, w, d), got {sp}")
        hw = vol.shape[:2]
        for name, img in (("slo", self.slo), ("faf", self.faf)):
            if img is not None:
                _check_map(img, hw, f"{loc}{name}")
        for name, img in self.extra_maps.items():
            _check_map(img, hw, f"{loc}extra map {name!r}")
        if self.mask is not None:
            _check_mask(self.mask, hw, f"{loc}mask")
        for name, m in self.extra_masks.items():
            _check_mask(m, hw, f"{loc}mask {name!r}")
        if self.bm_surface is not None:
            bm = np.asarray(self.bm_surface)
            if bm.shape != hw:
                raise DataError(f"{loc}BM surface has shape {bm.shape}, the volume's en-face shape is {hw}")
            if np.isinf(bm).any():
                raise DataError(f"{loc}BM surface has inf values (use NaN for unknown)")
        return self


def _check_map(img: np.ndarray, hw: tuple[int, int], what: str) -> None:
    arr = np.asarray(img)
    if arr.shape != hw:
        raise DataError(f"{what} has shape {arr.shape}, the volume's en-face shape (H, W) is {hw}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} has NaN or inf pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"{what} must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def _check_mask(mask: np.ndarray, hw: tuple[int, int], what: str) -> None:
    arr = np.asarray(mask)
    if arr.shape != hw:
        raise DataError(f"{what} has shape {arr.shape}, the volume's en-face shape (H, W) is {hw}")
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DataError(f"{what} is not binary: values {shown} (expected only 0 and 1)")


@dataclass
class ScanRef:
    """A scan's header and a loader, for lazy datasets; ``load()`` returns the checked ``Scan``."""

    scan_id: str
    patient_id: str
    eye: str
    visit: int
    loader: Callable[[], Scan]
    meta: dict = field(default_factory=dict)
    #: changes when the underlying files change (size, mtime); part of the prepared-cache check
    fingerprint: str = ""
    where: str = ""

    def load(self) -> Scan:
        """Load the scan, check it and make sure its header matches this reference."""
        scan = self.loader()
        for attr in ("scan_id", "patient_id", "eye", "visit"):
            if getattr(scan, attr) != getattr(self, attr):
                raise DataError(
                    f"{self.where or self.scan_id}: loaded {attr} {getattr(scan, attr)!r} "
                    f"differs from the header {getattr(self, attr)!r}"
                )
        scan.meta = {**self.meta, **scan.meta}
        return scan.check(self.where)


Item = Scan | ScanRef


class ScanSequence(Sequence):
    """The scans of a dataset, loaded on access (a list-like view; ``list(...)`` loads them all)."""

    def __init__(self, items: Sequence[Item]):
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return ScanSequence(self._items[i])
        item = self._items[i]
        return item.load() if isinstance(item, ScanRef) else item

    def __iter__(self) -> Iterator[Scan]:
        for i in range(len(self._items)):
            yield self[i]


class Dataset:
    """A named, ordered collection of scans (eager ``Scan`` or lazy ``ScanRef`` items).

    ``namespace`` identifies the source for the prepared cache (views of one cohort share it);
    duplicate scan ids and an empty dataset are errors.
    """

    def __init__(
        self,
        name: str,
        items: Iterable[Item],
        namespace: str | None = None,
        info: dict[str, Any] | None = None,
        allow_empty: bool = False,
    ):
        self.name = name
        self._items: list[Item] = list(items)
        self.namespace = namespace if namespace is not None else name
        self.info: dict[str, Any] = dict(info or {})
        if not self._items and not allow_empty:
            raise DataError(f"dataset {name!r} is empty: no scans found")
        seen: dict[str, int] = {}
        for i, item in enumerate(self._items):
            if item.scan_id in seen:
                where = getattr(item, "where", "") or f"item {i}"
                raise DataError(
                    f"dataset {name!r}: duplicate scan id {item.scan_id!r} ({where}; "
                    f"first seen at item {seen[item.scan_id]})"
                )
            seen[item.scan_id] = i

    @property
    def scans(self) -> ScanSequence:
        """The scans (lazy items load on access)."""
        return ScanSequence(self._items)

    @property
    def items(self) -> list[Item]:
        """The raw items (``Scan`` or ``ScanRef``), without loading."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} scans, {len(self.patient_ids())} patients)"

    @property
    def scan_ids(self) -> list[str]:
        """Scan ids in dataset order."""
        return [it.scan_id for it in self._items]

    def patient_ids(self) -> list[str]:
        """Sorted unique patient ids."""
        return sorted({it.patient_id for it in self._items})

    def fingerprint(self) -> str:
        """A hash of the data's identity (16 hex digits), without loading any scan.

        It covers the namespace (for synthetic data: preset parameters, difficulty and generator
        version), ``info`` (a manifest's content hash), and each item's id, patient, eye, visit and
        file fingerprint (a manifest row's file sizes and modification times): editing a preset or a
        manifest, or replacing a file, changes it.
        """
        parts = {
            "namespace": self.namespace,
            "info": self.info,
            "items": [
                [it.scan_id, it.patient_id, it.eye, int(it.visit), getattr(it, "fingerprint", "")]
                for it in self._items
            ],
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def header(self, scan_id: str) -> Item:
        """The item (``Scan`` or ``ScanRef``) of one scan id, without loading."""
        for it in self._items:
            if it.scan_id == scan_id:
                return it
        raise KeyError(f"dataset {self.name!r} has no scan {scan_id!r}")

    def subset(self, patient_ids: Iterable[str], name: str | None = None) -> Dataset:
        """The scans of the given patients (dataset order kept); unknown ids are an error."""
        wanted = set(patient_ids)
        unknown = wanted - set(self.patient_ids())
        if unknown:
            raise DataError(f"dataset {self.name!r} has no patients {sorted(unknown)[:5]}")
        return self.filter(lambda it: it.patient_id in wanted, name=name)

    def without_patients(self, patient_ids: Iterable[str], name: str | None = None) -> Dataset:
        """The scans of every patient except the given ones (e.g. GA-M minus GA-M-S)."""
        drop = set(patient_ids)
        return self.filter(lambda it: it.patient_id not in drop, name=name)

    def filter(self, keep: Callable[[Item], bool], name: str | None = None) -> Dataset:
        """The items for which ``keep(item)`` is true (headers only; nothing is loaded)."""
        return Dataset(
            name or self.name,
            [it for it in self._items if keep(it)],
            namespace=self.namespace,
            info=self.info,
            allow_empty=True,
        )
