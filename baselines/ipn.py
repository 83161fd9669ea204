"""IPN, the image projection network (Li et al., IEEE TMI 2020), from the official TensorFlow code.

Five projection learning modules (PLM): three 3x3x3 convs with ReLU, then a max pool along depth
only. The pool sizes follow from the input depth by the published rule (:func:`pool_sizes`), so
the network is built for one depth and brings it to 1; a 3x3x3 conv head gives the logits.
No normalisation, no skip connections, no en-face down-sampling. Layer facts: ``docs/models.md`` §4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench3d2d import InputShapeError, register_model
from bench3d2d.models import DEFAULT_DEPTH, SizeRule

PAPER = (
    "Li et al., Image projection network: 3D to 2D image segmentation in OCTA images, "
    "IEEE Transactions on Medical Imaging 39(11), 2020"
)

#: Largest pool factor the published search tries (IPN-tf utils.py).
MAX_POOL_FACTOR = 100

#: The official code feeds the network raw 8-bit intensities (0-255, no normalisation: IPN-tf
#: ``BatchDataReader`` casts the uint8 images to float32); this library z-scores every volume. The
#: input is multiplied by this factor so that it reaches the official network on the order of
#: magnitude of 8-bit intensities, for which the official initialisation was made (docs/models.md §4,
#: docs/diagnostics.md: with z-scored input the signal fades through the fifteen unnormalised layers).
OFFICIAL_INPUT_SCALE = 64.0

#: Registry metadata; the same rule is bound into every built model.
META: dict = {"h_multiple": 1, "w_multiple": 1, "depth": {"fixed": True}}
RULE = SizeRule.from_metadata(**META)


def _search(depth: int, n: int) -> tuple[int, ...] | None:
    """Lexicographically first non-decreasing n-tuple with minimal (product, sum) in range."""
    top = depth * 11 // 10
    best: tuple[int, ...] | None = None
    best_key: tuple[int, int] | None = None

    def visit(prefix: list[int], product: int) -> None:
        nonlocal best, best_key
        left = n - len(prefix)
        if left == 0:
            if product >= depth:
                key = (product, sum(prefix))
                if best_key is None or key < best_key:
                    best, best_key = tuple(prefix), key
            return
        start = prefix[-1] if prefix else 2
        for f in range(start, MAX_POOL_FACTOR + 1):
            if product * f**left > top:  # every later factor is >= f
                break
            prefix.append(f)
            visit(prefix, product * f)
            prefix.pop()

    visit([], 1)
    return best


def pool_sizes(depth: int, n: int = 5) -> tuple[int, ...]:
    """Depth pool factors of IPN's published rule (IPN-tf ``cal_downsampling_size_combine``).

    Among non-decreasing sequences 2 <= f1 <= ... <= fn <= 100 whose product P satisfies
    ``depth <= P <= floor(11 * depth / 10)``, take the smallest P, then the smallest sum (ties:
    the first in lexicographic order, as the official search); return it largest first.
    Raises :class:`InputShapeError` when no sequence qualifies, naming the nearest depths that work.
    """
    if n < 1:
        raise ValueError(f"number of pools must be >= 1, got {n}")
    found = _search(int(depth), n) if depth >= 1 else None
    if found is None:
        raise InputShapeError(
            f"IPN pool rule has no solution for depth {depth} with {n} pools: no non-decreasing "
            f"factors 2 <= f1 <= ... <= f{n} <= {MAX_POOL_FACTOR} have a product P with "
            f"{depth} <= P <= floor(11*{depth}/10) = {depth * 11 // 10}. "
            f"Nearest depths that work: {', '.join(map(str, _nearest_valid(depth, n)))}"
        )
    return tuple(reversed(found))


def _nearest_valid(depth: int, n: int) -> list[int]:
    """The closest depth below and above ``depth`` for which the rule has a solution."""
    out = []
    for step in (-1, 1):
        d = depth + step
        while 1 <= d <= max(2 * depth, 2**n * 4) and _search(d, n) is None:
            d += step
        if d >= 1 and _search(d, n) is not None:
            out.append(d)
    return out


class ProjectionLearningModule(nn.Sequential):
    """``n_convs`` x [conv 3x3x3 p 1 with bias, ReLU], then max pool (1, 1, pool) in ceil mode."""

    def __init__(self, cin: int, channels: int, pool: int, n_convs: int = 3) -> None:
        super().__init__()
        for i in range(n_convs):
            self.add_module(f"conv{i + 1}", nn.Conv3d(cin if i == 0 else channels, channels, 3, padding=1))
            self.add_module(f"relu{i + 1}", nn.ReLU(inplace=True))
        self.pool = nn.MaxPool3d((1, 1, pool), (1, 1, pool), ceil_mode=True)


def init_ipn(module: nn.Module) -> None:
    """Official IPN init (docs/models.md §4.5): truncated normal sigma 0.02 cut at +-2 sigma, biases 0.1."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.02, a=-0.04, b=0.04)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.1)


class IPN(nn.Module):
    """IPN: PLMs reduce depth to 1 by max pooling, a 3x3x3 conv head gives (B, K, H, W) logits.

    Built for one input depth ``depth``; the pool sizes come from :func:`pool_sizes`.
    The official head's ReLU and 2-class softmax are dropped (logits contract). The (z-scored) input
    is multiplied by ``input_scale`` (default :data:`OFFICIAL_INPUT_SCALE`; 1 leaves it as it is).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = DEFAULT_DEPTH,
        n_plm: int = 5,
        channels: int = 64,
        convs_per_plm: int = 3,
        input_scale: float = OFFICIAL_INPUT_SCALE,
    ) -> None:
        super().__init__()
        self.input_scale = float(input_scale)
        self.pools: Sequence[int] = pool_sizes(depth, n_plm)
        self.depth = int(depth)
        self.size_rule = RULE.bind(depth, in_channels)
        self.plms = nn.Sequential(
            *(
                ProjectionLearningModule(in_channels if i == 0 else channels, channels, p, convs_per_plm)
                for i, p in enumerate(self.pools)
            )
        )
        self.head = nn.Conv3d(channels, out_channels, 3, padding=1)
        init_ipn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.size_rule.check(tuple(x.shape), model=getattr(self, "registry_name", "ipn"))
        if self.input_scale != 1.0:
            x = x * self.input_scale
        return self.head(self.plms(x)).squeeze(-1)


@register_model(
    **META,
    paper=PAPER,
    description="5 projection learning modules (3 convs 3x3x3 + depth-only max pool), 3x3x3 conv head",
    reduction="unidirectional max pooling along depth; pool sizes from the depth by the published rule",
    defaults={
        # IPN-tf: TensorFlow's AdamOptimizer with its defaults (betas 0.9, 0.999; no weight decay)
        "official": {
            "optimizer": "adam",
            "lr": 1e-4,
            "betas": (0.9, 0.999),
            "weight_decay": 0.0,
            "batch_size": 3,
            "iterations": 20001,
            "loss": "softmax cross-entropy",
        },
    },
    tags=("baseline", "3d-encoder", "fixed-depth", "paper"),
)
def ipn(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """IPN (1,552,705 parameters for 1 -> 1 channels; built for one depth)."""
    return IPN(in_channels, out_channels, depth=DEFAULT_DEPTH if depth is None else depth, **kwargs)
