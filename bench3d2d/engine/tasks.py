"""Training tasks: which target a model learns, with which loss, scored how (``docs/protocol.md`` §5, §7).

* ``segmentation`` — target ``mask``, loss (soft Dice + BCE) / 2, validation score = Dice of
  (p > 0.5) vs (g > 0.5), 1 when both are empty.
* ``reconstruction`` — target ``slo`` or ``faf`` (the prepared FAF target is already inverted,
  1 − FAF), loss = −mean SSIM, validation score = mean SSIM.

Models output logits; the task applies the sigmoid. Scores are "higher is better".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench3d2d.engine.losses import dice_bce_loss, mean_ssim, nmssim_loss

#: Reconstruction targets (modalities) accepted by :func:`reconstruction`.
MODALITIES = ("slo", "faf")


@dataclass(frozen=True)
class Task:
    """A learning task: target key, loss on logits, per-case validation score on probabilities."""

    name: str
    target: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score_name: str
    binary_target: bool
    out_channels: int = 1

    @property
    def target_interpolation(self) -> str:
        """How the target is resized: ``nearest`` for masks, ``linear`` for continuous images."""
        return "nearest" if self.binary_target else "linear"

    def score(self, prob: torch.Tensor, target: torch.Tensor) -> float:
        """Validation score of one case: ``prob`` and ``target`` are (1, K, H, W) or (H, W)."""
        prob = _as4d(prob)
        target = _as4d(target)
        if self.binary_target:
            return dice_score(prob.detach().cpu().numpy() > 0.5, target.detach().cpu().numpy() > 0.5)
        return float(mean_ssim(prob.float(), target.float()))

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        return {"name": self.name, "target": self.target, "score": self.score_name}


def _as4d(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t)
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t


def dice_score(a: np.ndarray, m: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty."""
    total = int(a.sum()) + int(m.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, m).sum()) / total


def segmentation(target: str = "mask") -> Task:
    """The segmentation task on ``target`` (default ``mask``)."""
    return Task("segmentation", target, dice_bce_loss, "dice", binary_target=True)


def reconstruction(modality: str) -> Task:
    """The SSL reconstruction task: OCT -> ``slo`` or ``faf`` (inverted FAF)."""
    if modality not in MODALITIES:
        raise ValueError(
            f"unknown reconstruction modality {modality!r}; choose one of {', '.join(MODALITIES)}"
        )
    return Task("reconstruction", modality, nmssim_loss, "ssim", binary_target=False)


def task_for_target(target: str) -> Task:
    """The task that learns ``target``: reconstruction for ``slo``/``faf``, segmentation otherwise."""
    return reconstruction(target) if target in MODALITIES else segmentation(target)
