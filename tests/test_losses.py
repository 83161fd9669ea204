"""Losses of docs/protocol.md §5: soft Dice + BCE and negative mean SSIM (checked against scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from bench3d2d.engine.losses import (
    dice_bce_loss,
    gaussian_window,
    mean_ssim,
    nmssim_loss,
    soft_dice,
    ssim_map,
)


def _images(seed: int = 0, shape=(40, 52)):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    y = np.clip(0.6 * x + 0.4 * rng.random(shape), 0, 1)
    return x, y


def test_gaussian_window_is_normalised_and_matches_the_formula():
    g = gaussian_window()
    assert g.shape == (11, 11)
    assert float(g.sum()) == pytest.approx(1.0, abs=1e-6)
    i = np.arange(11)
    g1 = np.exp(-((i - 5) ** 2) / (2 * 1.5**2))
    g1 /= g1.sum()
    np.testing.assert_allclose(g.numpy(), np.outer(g1, g1), atol=1e-7)


def test_ssim_interior_matches_skimage():
    x, y = _images()
    ours = ssim_map(torch.tensor(x)[None, None].float(), torch.tensor(y)[None, None].float())[0, 0].numpy()
    ref_mean, ref_map = structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
    )
    # skimage pads by reflection and averages the interior (5 pixels from each border); the
    # interior does not depend on the padding, so both must agree there.
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref_map[5:-5, 5:-5], atol=2e-5)
    assert ours[5:-5, 5:-5].mean() == pytest.approx(ref_mean, abs=2e-6)


def test_ssim_uses_zero_padding_on_the_border():
    x, y = _images(1, (24, 30))
    xt, yt = torch.tensor(x)[None, None].float(), torch.tensor(y)[None, None].float()
    g = gaussian_window()[None, None]
    mu_x, mu_y = F.conv2d(xt, g, padding=5), F.conv2d(yt, g, padding=5)
    sxx = F.conv2d(xt * xt, g, padding=5) - mu_x**2
    syy = F.conv2d(yt * yt, g, padding=5) - mu_y**2
    sxy = F.conv2d(xt * yt, g, padding=5) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    torch.testing.assert_close(ssim_map(xt, yt), ref, atol=1e-5, rtol=0)
    assert float(nmssim_loss(torch.logit(xt.clamp(1e-4, 1 - 1e-4)), yt)) == pytest.approx(
        -float(ref.mean()), abs=1e-3
    )


def test_ssim_of_identical_images_is_one():
    x, _ = _images(2, (20, 20))
    t = torch.tensor(x)[None, None].float()
    assert float(mean_ssim(t, t)) == pytest.approx(1.0, abs=1e-5)


def test_dice_bce_by_hand():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 4, 5)
    g = (torch.rand(2, 1, 4, 5) > 0.5).float()
    p = torch.sigmoid(z)
    s = (2 * (p * g).sum() + 2e-6) / ((p * p).sum() + g.sum() + 2e-6)
    bce = -(g * torch.log(p) + (1 - g) * torch.log(1 - p)).mean()
    expected = ((1 - s) + bce) / 2
    assert float(dice_bce_loss(z, g)) == pytest.approx(float(expected), rel=1e-5)


def test_soft_dice_is_per_channel_over_the_batch():
    p = torch.zeros(2, 2, 3, 3)
    g = torch.zeros(2, 2, 3, 3)
    p[:, 0] = 1
    g[:, 0] = 1  # channel 0 perfect, channel 1 both empty -> smoothing gives 1
    g[0, 1, 0, 0] = 1  # channel 1: one missed pixel
    d = soft_dice(p, g)
    assert d.shape == (2,)
    assert float(d[0]) == pytest.approx(1.0)
    assert float(d[1]) == pytest.approx(2e-6 / (1 + 2e-6))


def test_losses_reject_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        dice_bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="same shape"):
        nmssim_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 4))
