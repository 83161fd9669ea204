"""What the engine needs from data: the :class:`CaseSource` protocol, an in-memory source,
training batches with the protocol's augmentation (§3) and evaluation inputs (§4).

``bench3d2d.data.PreparedDataset`` satisfies :class:`CaseSource`; so does :class:`ArrayCases`,
which tests and notebooks use to train on arrays directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from bench3d2d.data.evalgrid import mask_to_eval_grid, resize_linear, resize_nearest, to_eval_grid

#: Augmentation parameters of ``docs/protocol.md`` §3 (p = 0.5 for rotation and each flip).
BRIGHTNESS_SD = 0.2
CONTRAST_RANGE = (0.9, 1.1)
SHIFT_RANGE = (-0.2, 0.2)


@runtime_checkable
class CaseSource(Protocol):
    """Cases the engine can train and evaluate on (``PreparedDataset`` is one)."""

    @property
    def case_ids(self) -> list[str]:
        """Case (scan) ids in a fixed order."""
        ...

    def volume(self, case_id: str) -> np.ndarray:
        """The prepared volume ``(H, W, D)``, float32, z-scored."""
        ...

    def target(self, case_id: str, key: str) -> np.ndarray | None:
        """An en-face map ``(H, W)`` (``mask``, ``slo``, ``faf`` inverted, ``mask:<rater>``) or None."""
        ...

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """Voxel spacing (h, w, d) in mm."""
        ...


@dataclass
class ArrayCases:
    """An in-memory :class:`CaseSource`: volumes, ``maps[key][case_id]`` targets, spacings, patients."""

    volumes: Mapping[str, np.ndarray]
    maps: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    spacings: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    patients: Mapping[str, str] = field(default_factory=dict)
    name: str = "arrays"

    @property
    def case_ids(self) -> list[str]:
        """Case ids in insertion order."""
        return list(self.volumes)

    def volume(self, case_id: str) -> np.ndarray:
        """The volume of one case."""
        return np.asarray(self.volumes[case_id], dtype=np.float32)

    def target(self, case_id: str, key: str) -> np.ndarray | None:
        """A target map, or None when the case has none under ``key``."""
        t = self.maps.get(key, {}).get(case_id)
        return None if t is None else np.asarray(t, dtype=np.float32)

    def targets(self, case_id: str) -> list[str]:
        """The target keys available for one case."""
        return [k for k, v in self.maps.items() if case_id in v]

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """Spacing (h, w, d) in mm (1 mm when not given)."""
        return tuple(self.spacings.get(case_id, (1.0, 1.0, 1.0)))  # type: ignore[return-value]

    def patient(self, case_id: str) -> str:
        """Patient id of a case (the case id when not given)."""
        return self.patients.get(case_id, case_id)

    def subset(self, case_ids: Iterable[str]) -> ArrayCases:
        """The given cases only."""
        ids = list(case_ids)
        return ArrayCases(
            {c: self.volumes[c] for c in ids},
            {k: {c: v[c] for c in ids if c in v} for k, v in self.maps.items()},
            {c: self.spacings[c] for c in ids if c in self.spacings},
            {c: self.patients[c] for c in ids if c in self.patients},
            self.name,
        )


def require_targets(source: CaseSource, key: str, what: str) -> None:
    """Raise ValueError naming the first case of ``source`` that has no ``key`` target."""
    ids = list(source.case_ids)
    if not ids:
        raise ValueError(f"{what}: no cases")
    for cid in ids:
        if source.target(cid, key) is None:
            raise ValueError(f"{what}: case {cid!r} has no {key!r} target")


def round_schedule(
    n_cases: int, steps: int, batch: int, repeats: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Case indices of one round, shape (steps, batch): every case ``repeats`` times, shuffled.

    ``repeats`` None means "as many as the steps need". The incomplete last batch is dropped.
    """
    need = -(-steps * batch // n_cases)
    reps = max(int(repeats or 0), need)
    pool = np.repeat(np.arange(n_cases), reps)
    order = rng.permutation(pool)
    return order[: steps * batch].reshape(steps, batch)


def augment(
    volume: np.ndarray, target: np.ndarray, crop: tuple[int, int], binary: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as docs/protocol.md §3: crop, resize if short, rotate 180°, flips, intensity.

    The random numbers are drawn in a fixed order whatever the input, so a seed fixes the stream.
    """
    H, W = volume.shape[:2]
    ch, cw = crop
    h0 = int(rng.integers(0, H - ch + 1)) if ch <= H else 0
    w0 = int(rng.integers(0, W - cw + 1)) if cw <= W else 0
    rotate, flip_h, flip_w = rng.random(3) < 0.5
    offset = rng.normal(0.0, BRIGHTNESS_SD)
    contrast = rng.uniform(*CONTRAST_RANGE)
    shift = rng.uniform(*SHIFT_RANGE)

    v = np.array(volume[h0 : h0 + ch, w0 : w0 + cw], dtype=np.float32)
    t = np.array(target[h0 : h0 + ch, w0 : w0 + cw], dtype=np.float32)
    if v.shape[:2] != (ch, cw):
        v = resize_linear(v, (ch, cw))
        t = resize_nearest(t, (ch, cw)) if binary else resize_linear(t, (ch, cw))
    if rotate:
        v, t = v[::-1, ::-1], t[::-1, ::-1]
    if flip_h:
        v, t = v[::-1], t[::-1]
    if flip_w:
        v, t = v[:, ::-1], t[:, ::-1]
    v = ((v + np.float32(offset)) * np.float32(contrast) + np.float32(shift)).astype(np.float32)
    return np.ascontiguousarray(v), np.ascontiguousarray(t, dtype=np.float32)


def make_batch(
    source: CaseSource,
    case_ids: Sequence[str],
    target_key: str,
    crop: tuple[int, int],
    binary: bool,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented batch: volumes (B, 1, h, w, D) and targets (B, 1, h, w)."""
    vols, tgts = [], []
    for cid in case_ids:
        target = source.target(cid, target_key)
        if target is None:
            raise ValueError(f"case {cid!r} has no {target_key!r} target")
        v, t = augment(source.volume(cid), target, crop, binary, rng)
        vols.append(v)
        tgts.append(t)
    x = torch.from_numpy(np.stack(vols)[:, None])
    y = torch.from_numpy(np.stack(tgts)[:, None])
    return x, y


def eval_input(source: CaseSource, case_id: str) -> torch.Tensor:
    """The §4 input of one case: the volume on the evaluation grid, shape (1, 1, H', W', D)."""
    return torch.from_numpy(np.array(to_eval_grid(source.volume(case_id)), dtype=np.float32))[None, None]


def eval_target(source: CaseSource, case_id: str, key: str, binary: bool) -> torch.Tensor:
    """A target on the evaluation grid, (1, 1, H', W'): masks nearest, continuous maps linear."""
    t = source.target(case_id, key)
    if t is None:
        raise ValueError(f"case {case_id!r} has no {key!r} target")
    grid = mask_to_eval_grid(t) if binary else to_eval_grid(t)
    return torch.from_numpy(np.array(grid, dtype=np.float32))[None, None]  # a writable copy
