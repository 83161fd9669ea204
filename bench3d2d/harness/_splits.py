"""Split records of a results folder, keyed by the dataset's identity (private).

``RESULTS/splits/<label>-<identity>.json`` holds the patient-wise split every run of one dataset
uses. ``<identity>`` hashes the dataset (registered name or resolved path) together with its data
fingerprint, so two studies laid out as ``studyA/manifest.csv`` and ``studyB/manifest.csv`` never
share a record, and a changed dataset (patients added, a file replaced) gets a new record instead
of clashing with the old one. The split a run will use is computed from the data's headers and
compared with the record *before* the run trains (:func:`check_split`); the run writes the
record after it finished (:func:`record_split`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench3d2d._io import atomic_write_json, safe_name
from bench3d2d.harness._spec import canonical_json, short_hash
from bench3d2d.harness._store import ResultsStore, read_json

__all__ = ["SplitMismatchError", "check_split", "expected_split", "record_split", "split_record_path"]

#: The parts of a split record that must agree between runs of one dataset.
PARTS = ("train", "val", "test")
#: The fields kept in the record.
KEYS = ("dataset", "seed", "ratios", "train", "val", "test", "counts", "split_seed", "fingerprint")


class SplitMismatchError(ValueError):
    """The split a run would use differs from the one recorded for the same dataset identity."""


def _label(dataset: str) -> str:
    """A readable file-name stem: a registered name as it is, a path as ``<folder>-<file stem>``."""
    if "/" not in dataset and "\\" not in dataset:
        return safe_name(dataset, limit=40)
    path = Path(dataset)
    stem = path.stem if path.suffix else path.name
    return safe_name(f"{path.parent.name}-{stem}" if path.suffix else stem, limit=40)


def split_record_path(store: ResultsStore, dataset: str, fingerprint: str | None) -> Path:
    """``RESULTS/splits/<label>-<12 hex digits of the dataset's identity>.json``."""
    ident = short_hash(canonical_json({"dataset": str(dataset), "fingerprint": fingerprint or ""}))
    return store.splits_dir / f"{_label(str(dataset))}-{ident}.json"


def expected_split(dataset: Any, name: str, split_seed: int) -> dict[str, Any]:
    """The split a run of ``dataset`` (a loaded :class:`~bench3d2d.data.Dataset`) will use, from its
    headers only; too few patients for a validation part is a ``DataError`` saying how many."""
    from bench3d2d.data import make_split
    from bench3d2d.data.splits import require_split_patients

    patients = dataset.patient_ids()
    require_split_patients(len(patients), name)
    split = make_split(patients, seed=split_seed, dataset=name).to_dict()
    return {**split, "split_seed": int(split_seed), "fingerprint": dataset.fingerprint()}


def check_split(path: Path, split: Mapping[str, Any]) -> None:
    """Raise :class:`SplitMismatchError` when ``path`` records another split than ``split``."""
    existing = read_json(path)
    if existing is None:
        return
    if {k: existing.get(k) for k in PARTS} != {k: split.get(k) for k in PARTS}:
        raise SplitMismatchError(
            f"{path} holds another split of {split.get('dataset')!r} than this run uses "
            "(split seed or split rule changed?); nothing was trained. Remove the record or use a new "
            "results folder (--out)"
        )


def record_split(path: Path, split: Mapping[str, Any]) -> None:
    """Write the dataset's split record (the first run writes it; later runs must agree)."""
    check_split(path, split)
    if read_json(path) is None:
        atomic_write_json(path, {k: split[k] for k in KEYS if k in split})
