"""ReSensNet (Seeböck et al., 2022) as adapted in the FPB-net paper (Morano et al., MICCAI 2023).

Identical to the FPB net (same encoder, strided feature projections, decoder, head and init;
built by :class:`bench3d2d.models.fpbnet.ProjectionUNet`) except the projection: the final conv of
every feature projection has depth D/16 and there is no mean, so the conv itself reaches depth 1
and the network is built for one depth. Layer facts: ``docs/models.md`` §2.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bench3d2d import InputShapeError, register_model
from bench3d2d.models import DEFAULT_DEPTH, SizeRule
from bench3d2d.models.fpbnet import WIDTHS, ProjectionUNet

PAPER = (
    "Seeböck et al., Linking function and structure with ReSensNet: predicting retinal sensitivity "
    "from OCT using deep learning, Ophthalmology Retina, 2022; as adapted by Morano et al., MICCAI 2023"
)

#: Every projection reaches depth D/16 after its strided unit (four 2x depth pools in the encoder).
DEPTH_MULTIPLE = 16

META: dict = {
    "h_multiple": 4,
    "w_multiple": 16,
    "depth": {"fixed": True, "multiple": DEPTH_MULTIPLE, "min": DEPTH_MULTIPLE},
}
RULE = SizeRule.from_metadata(**META)


def ReSensNet(
    in_channels: int = 1,
    out_channels: int = 1,
    depth: int = DEFAULT_DEPTH,
    widths: Sequence[int] = WIDTHS,
) -> ProjectionUNet:
    """ReSensNet for one input depth: projection kernels (1, 1, depth/16), no mean over depth.

    Raises :class:`InputShapeError` unless ``depth`` is a positive multiple of 16. ``widths``
    (default 16...256, as the reference baseline) may be set to the original 32...512.
    """
    if depth < DEPTH_MULTIPLE or depth % DEPTH_MULTIPLE:
        raise InputShapeError(
            f"ReSensNet is built for one depth, a positive multiple of {DEPTH_MULTIPLE} (its final "
            f"projection conv has depth D/{DEPTH_MULTIPLE}, with no mean over depth); got depth {depth}"
        )
    return ProjectionUNet(
        in_channels,
        out_channels,
        RULE.bind(depth, in_channels),
        final_depth=depth // DEPTH_MULTIPLE,
        mean=False,
        widths=widths,
    )


@register_model(
    **META,
    paper=PAPER,
    description="FPB net's 3-D residual encoder and 2-D decoder; projections end in a (1,1,D/16) conv "
    "without a mean, so built for one depth",
    reduction="feature projection at every level: strided depth convs, then a conv spanning the "
    "remaining depth D/16",
    tags=("baseline", "3d-encoder", "fixed-depth", "paper"),
)
def resensnet(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """ReSensNet (4,718,737 parameters for 1 -> 1 channels at depth 128; built for one depth)."""
    return ReSensNet(in_channels, out_channels, depth=DEFAULT_DEPTH if depth is None else depth, **kwargs)
