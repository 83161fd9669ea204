"""Patient-wise splits (docs/protocol.md §1.2) and nested label fractions (docs/protocol.md §9).

``make_split`` sorts the patient ids, shuffles them with the split seed and cuts
n_train = ⌊0.6·n + ½⌋, n_val = ⌊0.1·n + ½⌋ (at least 1 when n ≥ 3), the rest test.
``label_subset`` sorts the training patients, shuffles them with the run seed (a permutation that
does not depend on the fraction) and keeps the first max(1, ⌊r·n⌋), with r read as an exact
decimal; so 5 % ⊂ 10 % ⊂ 20 % ⊂ 100 % for one seed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np

from bench3d2d._io import atomic_write_json
from bench3d2d.data.records import DataError

__all__ = [
    "MIN_SPLIT_PATIENTS",
    "Split",
    "label_subset",
    "make_split",
    "parse_fraction",
    "require_split_patients",
]

#: The fewest patients whose 60/10/30 split has a patient in each of train, validation and test.
MIN_SPLIT_PATIENTS = 3


@dataclass
class Split:
    """Patient ids of the train / val / test parts; a patient in two parts is an error."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int = 0
    dataset: str = ""
    ratios: tuple[float, float, float] = (0.6, 0.1, 0.3)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train, self.val, self.test = list(self.train), list(self.val), list(self.test)
        self.ratios = tuple(float(r) for r in self.ratios)  # type: ignore[assignment]
        seen: dict[str, str] = {}
        for part in ("train", "val", "test"):
            ids = getattr(self, part)
            for pid in ids:
                if not isinstance(pid, str):
                    raise DataError(
                        f"split of {self.dataset!r}: patient id {pid!r} in {part} is not a string"
                    )
                if pid in seen:
                    where = "twice in " + part if seen[pid] == part else f"in both {seen[pid]} and {part}"
                    raise DataError(f"split of {self.dataset!r}: patient {pid!r} is {where}")
                seen[pid] = part

    def part(self, name: str) -> list[str]:
        """The patient ids of ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split part {name!r} (train, val, test)")
        return list(getattr(self, name))

    def part_of(self, patient_id: str) -> str | None:
        """Which part holds a patient (None if none)."""
        for name in ("train", "val", "test"):
            if patient_id in getattr(self, name):
                return name
        return None

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "ratios": list(self.ratios),
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "counts": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "split") -> Split:
        """Inverse of ``to_dict``; a missing part or a patient in two parts is a ``DataError``."""
        missing = [k for k in ("train", "val", "test") if k not in d]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}")
        try:
            return cls(
                train=d["train"],
                val=d["val"],
                test=d["test"],
                seed=int(d.get("seed", 0)),
                dataset=str(d.get("dataset", "")),
                ratios=tuple(d.get("ratios", (0.6, 0.1, 0.3))),
                extra=dict(d.get("extra", {})),
            )
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the split atomically (temp file in the same folder, then ``os.replace``)."""
        path = Path(path)
        atomic_write_json(path, self.to_dict(), sort_keys=False)
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Split:
        """Read a split written by ``to_json``."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"split file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(d, where=str(path))


def _round_half_up(x: Decimal) -> int:
    return int((x + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR))


def _unique_sorted(patient_ids: Iterable[str], what: str) -> list[str]:
    ids = [str(p) for p in patient_ids]
    if len(set(ids)) != len(ids):
        dup = sorted({p for p in ids if ids.count(p) > 1})
        raise DataError(f"{what}: duplicate patient ids {dup[:5]}")
    return sorted(ids)


def make_split(
    patient_ids: Iterable[str],
    seed: int = 0,
    ratios: Sequence[float] = (0.6, 0.1, 0.3),
    dataset: str = "",
) -> Split:
    """Patient-wise split as docs/protocol.md §1.2: sorted ids, seeded shuffle, rounded train/val sizes."""
    ids = _unique_sorted(patient_ids, f"split of {dataset!r}")
    if not ids:
        raise DataError(f"split of {dataset!r}: no patients")
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-9):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {tuple(ratios)}")
    n = len(ids)
    r_train, r_val = Decimal(str(ratios[0])), Decimal(str(ratios[1]))
    n_train = min(n, _round_half_up(r_train * n))
    n_val = _round_half_up(r_val * n)
    if n >= 3 and r_val > 0:
        n_val = max(1, n_val)
    n_val = min(n_val, n - n_train)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ids[i] for i in order]
    return Split(
        train=shuffled[:n_train],
        val=shuffled[n_train : n_train + n_val],
        test=shuffled[n_train + n_val :],
        seed=seed,
        dataset=dataset,
        ratios=tuple(float(r) for r in ratios),  # type: ignore[arg-type]
    )


def require_split_patients(n_patients: int, dataset: str = "") -> None:
    """Raise ``DataError`` when ``n_patients`` are too few for a split with a validation part."""
    if n_patients < MIN_SPLIT_PATIENTS:
        raise DataError(
            f"{dataset}: {n_patients} patient(s); the patient-wise split needs at least "
            f"{MIN_SPLIT_PATIENTS} (one each for training, validation and test)"
        )


def parse_fraction(fraction: float | int | str | Decimal) -> Decimal:
    """A label fraction given in percent (5, "5", "12.5", Decimal("5")) as an exact decimal in (0, 1]."""
    text = str(fraction).strip().rstrip("%")
    try:
        pct = Decimal(fraction) if isinstance(fraction, Decimal) else Decimal(text)
    except Exception:
        msg = f"label fraction must be a percentage such as 5 or '12.5', got {fraction!r}"
        raise ValueError(msg) from None
    if not pct.is_finite() or pct <= 0 or pct > 100:
        raise ValueError(f"label fraction must be a percentage in (0, 100], got {fraction!r}")
    return pct / Decimal(100)


def label_subset(
    train_patients: Iterable[str], fraction: float | int | str | Decimal, seed: int
) -> list[str]:
    """The first max(1, ⌊r·n⌋) training patients of a seeded permutation (docs/protocol.md §9), sorted.

    ``fraction`` is in percent (5 means 5 %). Nested for one seed: 5 % ⊂ 10 % ⊂ 20 % ⊂ 100 %.
    """
    ids = _unique_sorted(train_patients, "label subset")
    if not ids:
        raise DataError("label subset: no training patients")
    r = parse_fraction(fraction)
    n = len(ids)
    n_r = max(1, int((r * n).to_integral_value(rounding=ROUND_FLOOR)))
    order = np.random.default_rng(seed).permutation(n)
    return sorted(ids[i] for i in order[:n_r])
