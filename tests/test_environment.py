"""The pinned environment works: timm (which imports torchvision) imports and builds a backbone."""

from __future__ import annotations

import torch


def test_timm_backbone_builds_offline():
    import timm
    import torchvision  # noqa: F401  (timm needs it; a mismatched build fails right here)

    backbone = timm.create_model("resnet18", pretrained=False, features_only=True, in_chans=3)
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()


def test_console_script_lists_models(capsys):
    from bench3d2d.cli import main

    assert main(["models", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"name": "fpbnet"' in out and '"parameters": 4369553' in out
