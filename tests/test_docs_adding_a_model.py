"""The example in docs/adding-a-model.md runs as written and passes the model contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import bench3d2d
from bench3d2d.models import _registry as registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-model.md"


def test_documented_example_registers_a_working_model(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "no python example in docs/adding-a-model.md"
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)

    assert "maxproj_net" in bench3d2d.list_models()
    model = bench3d2d.create_model("maxproj_net", depth=16)
    x = torch.randn(2, 1, 5, 7, 16, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 1, 5, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert bench3d2d.model_info("maxproj_net").hyperparameters()["lr"] == 0.05
    with pytest.raises(bench3d2d.InputShapeError):
        model(torch.randn(2, 1, 5, 7))
