"""Training losses of the protocol (``docs/protocol.md`` §5); every loss takes logits.

* :func:`dice_bce_loss` — segmentation: (soft Dice loss + BCE) / 2, one Dice per channel over
  the whole batch, ``p`` squared in the denominator, ``g`` not.
* :func:`nmssim_loss` — reconstruction: negative mean SSIM with an 11 x 11 Gaussian window
  (sigma 1.5), zero padding 5 (same-size map), C1 = 0.01², C2 = 0.03².
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

SMOOTH = 1e-6
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _check_pair(logits: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"{what}: logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    if logits.dim() != 4:
        raise ValueError(f"{what}: expected (N, K, H, W) tensors, got {tuple(logits.shape)}")


def soft_dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-channel soft Dice over batch and pixels: (2Σpg + 2e-6) / (Σp² + Σg + 2e-6), shape (K,)."""
    dims = (0, 2, 3)
    inter = (prob * target).sum(dims)
    denom = (prob * prob).sum(dims) + target.sum(dims)
    return (2 * inter + 2 * SMOOTH) / (denom + 2 * SMOOTH)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Segmentation loss (§5.1): ((1 - mean_k soft Dice) + BCE-with-logits) / 2."""
    _check_pair(logits, target, "dice_bce_loss")
    logits = logits.float()
    target = target.float()
    dice = 1.0 - soft_dice(torch.sigmoid(logits), target).mean()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return (dice + bce) / 2


@functools.lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 2-D Gaussian window G = g gᵀ, shape (size, size), summing to 1."""
    g = _gauss_1d(size, sigma)
    return torch.outer(g, g)


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM map of images in [0, 1], (N, C, H, W) -> (N, C, H, W); zero padding keeps the size."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim_map: expected two equal (N, C, H, W) tensors, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    x = x.float()
    y = y.float()
    c = x.shape[1]
    g = _gauss_1d(SSIM_WINDOW, SSIM_SIGMA).to(x.device)
    pad = SSIM_WINDOW // 2
    # Separable Gaussian: rows then columns, zero padding, one group per channel.
    kh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, kh, padding=(pad, 0), groups=c)
        return F.conv2d(t, kw, padding=(0, pad), groups=c)

    stacked = blur(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mu_x, mu_y, xx, yy, xy = stacked.chunk(5, dim=0)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


def mean_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of :func:`ssim_map` over N, channels, H and W (a scalar tensor)."""
    return ssim_map(x, y).mean()


def nmssim_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss (§5.2): minus the mean SSIM of sigmoid(logits) and the target."""
    _check_pair(logits, target, "nmssim_loss")
    return -mean_ssim(torch.sigmoid(logits.float()), target)
