"""En-face U-Net (beyond the paper): is 3-D processing needed at all?

The volume is reduced to a few en-face projections before any learning: depth is split into
``slabs`` near-equal slabs and each slab gives its mean, maximum and standard deviation, per input
channel (``C_in x slabs x 3`` 2-D channels). A U-Net whose encoder is any timm CNN backbone
(``features_only=True``, never pretrained: nothing is downloaded) segments them. The input is
padded (edge replication) to the backbone's stride internally and the logits cropped back, so any
H and W work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from bench3d2d import InputShapeError, register_model
from bench3d2d.models import SizeRule

#: Small ResNet (timm's "resnet10t": tiered 3-conv stem, one basic block per stage, 4.9 M
#: parameters as an encoder), close in size to the 3-D baselines (1.5-4.7 M); any timm name works.
DEFAULT_BACKBONE = "resnet10t"
#: timm's ResNets start each residual block's last BN at gamma 0, which leaves the block's other
#: layers without gradient at the first step; the default backbone starts with every layer learning.
DEFAULT_BACKBONE_KWARGS: Mapping[str, Any] = {"zero_init_last": False}
DEFAULT_SLABS = 4
STATS = ("mean", "max", "std")
#: Decoder widths from the deepest skip upwards, then the full-resolution block (as smp's U-Net).
DECODER_CHANNELS = (256, 128, 64, 32, 16)

META: dict = {"h_multiple": 1, "w_multiple": 1, "depth": {"min": DEFAULT_SLABS}}


def slab_projections(x: torch.Tensor, slabs: int) -> torch.Tensor:
    """(B, C, H, W, D) -> (B, 3 * C * slabs, H, W): mean, max and std (population) of each depth slab.

    Slabs are near-equal consecutive depth ranges (sizes differ by at most one when D % slabs != 0).
    Channel order: statistic, then input channel, then slab.
    """
    parts = torch.tensor_split(x, slabs, dim=-1)
    stats = [
        torch.stack([p.mean(dim=-1) for p in parts], dim=2),
        torch.stack([p.amax(dim=-1) for p in parts], dim=2),
        torch.stack([p.std(dim=-1, correction=0) for p in parts], dim=2),
    ]
    b, c, _, h, w = stats[0].shape
    return torch.cat(stats, dim=1).reshape(b, len(stats) * c * slabs, h, w)


class ConvBNReLU2d(nn.Sequential):
    """conv 3x3 p 1 (no bias) -> BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )


class DecoderBlock(nn.Module):
    """Nearest upsampling to the skip's size, concat [skip, up] (when a skip is given), 2 conv-BN-ReLU."""

    def __init__(self, c_low: int, c_skip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU2d(c_low + c_skip, cout), ConvBNReLU2d(cout, cout))

    def forward(self, low: torch.Tensor, skip: torch.Tensor | None, size: Sequence[int]) -> torch.Tensor:
        x = F.interpolate(low, size=tuple(size), mode="nearest")
        if skip is not None:
            x = torch.cat([skip, x], dim=1)
        return self.convs(x)


class EnfaceUNet(nn.Module):
    """Slab projections -> timm encoder (features_only) -> U-Net decoder -> (B, K, H, W) logits.

    ``backbone`` is any timm model name that supports ``features_only`` (default ``resnet10t``);
    ``backbone_kwargs`` go to ``timm.create_model`` (``pretrained`` is always False); when not
    given, the default backbone gets :data:`DEFAULT_BACKBONE_KWARGS` and any other backbone none.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        slabs: int = DEFAULT_SLABS,
        backbone: str = DEFAULT_BACKBONE,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if slabs < 1:
            raise ValueError(f"slabs must be >= 1, got {slabs}")
        if backbone_kwargs is None:
            backbone_kwargs = DEFAULT_BACKBONE_KWARGS if backbone == DEFAULT_BACKBONE else {}
        extra = dict(backbone_kwargs)
        if extra.pop("pretrained", False):
            raise ValueError("enface_unet never downloads weights: pretrained=True is not supported")
        self.slabs = int(slabs)
        self.size_rule = SizeRule.from_metadata(**{**META, "depth": {"min": self.slabs}}).bind(
            self.slabs, in_channels
        )
        n_proj = len(STATS) * in_channels * self.slabs
        self.encoder = timm.create_model(
            backbone, features_only=True, pretrained=False, in_chans=n_proj, **extra
        )
        info: Any = self.encoder.feature_info  # timm's FeatureInfo (typed as a module attribute)
        chans = list(info.channels())
        self.reductions = list(info.reduction())
        self.stride = max(self.reductions)
        n = len(chans)
        if len(decoder_channels) < n:
            raise ValueError(
                f"decoder_channels needs {n} widths for backbone {backbone!r} ({n} feature levels), "
                f"got {tuple(decoder_channels)}"
            )
        dec = list(decoder_channels)
        blocks = []
        c_low = chans[-1]
        for k, i in enumerate(reversed(range(n - 1))):  # skips from the deepest-but-one upwards
            blocks.append(DecoderBlock(c_low, chans[i], dec[k]))
            c_low = dec[k]
        self.decoder = nn.ModuleList(blocks)
        # Full resolution: the shallowest feature is at stride reductions[0] (2 for a ResNet).
        self.final = DecoderBlock(c_low, 0, dec[n - 1]) if self.reductions[0] > 1 else None
        self.head = nn.Conv2d(dec[n - 1] if self.final is not None else c_low, out_channels, 1)

    def _padded(self, size: int) -> int:
        """Round up to the stride, at least two strides (BatchNorm then sees >1 value per channel)."""
        s = self.stride
        return max(-(-size // s) * s, 2 * s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.size_rule.check(tuple(x.shape), model=getattr(self, "registry_name", "enface_unet"))
        h, w = x.shape[2], x.shape[3]
        proj = slab_projections(x, self.slabs)
        ph, pw = self._padded(h), self._padded(w)
        proj = F.pad(proj, [0, pw - w, 0, ph - h], mode="replicate")
        feats = self.encoder(proj)
        out = feats[-1]
        for block, skip in zip(self.decoder, reversed(feats[:-1])):
            out = block(out, skip, skip.shape[-2:])
        if self.final is not None:
            out = self.final(out, None, (ph, pw))
        return self.head(out)[:, :, :h, :w]


@register_model(
    **META,
    paper="beyond the paper: 2-D U-Net on en-face slab projections (timm encoder), the no-3-D control",
    description="en-face projections (mean, max, std over depth slabs) segmented by a U-Net with a timm "
    "encoder (default resnet10t, random init)",
    reduction="fixed statistics over depth slabs before any learning (mean, max, std), then 2-D only",
    tags=("baseline", "2d", "projection", "timm", "beyond-paper"),
)
def enface_unet(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """En-face U-Net on slab projections (any H, W; any D >= slabs, default 4)."""
    slabs = int(kwargs.get("slabs", DEFAULT_SLABS))
    if depth is not None and depth < slabs:
        raise InputShapeError(f"enface_unet with {slabs} slabs needs depth >= {slabs}; got depth {depth}")
    return EnfaceUNet(in_channels, out_channels, **kwargs)
