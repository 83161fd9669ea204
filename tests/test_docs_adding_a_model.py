"""The example in docs/adding-a-model.md runs as written and passes the model contract."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

import bench3d2d
from bench3d2d.cli import main
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


def test_documented_file_works_as_a_plugin_from_the_command_line(tmp_path, monkeypatch, capsys):
    """The same code saved as my_models.py is found by ``bench3d2d models --plugin my_models.py``."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    text = DOC.read_text()
    assert "--plugin my_models.py" in text and "BENCH3D2D_PLUGINS" in text
    assert '[project.entry-points."bench3d2d.models"]' in text  # both ways are shown
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    (tmp_path / "my_models.py").write_text(block)
    monkeypatch.chdir(tmp_path)
    assert main(["models", "maxproj_net", "--plugin", "my_models.py", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "maxproj_net" and row["parameters"] > 0
    for name in [m for m in sys.modules if m.startswith("bench3d2d_plugin_my_models")]:
        monkeypatch.delitem(sys.modules, name)
