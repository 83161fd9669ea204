"""The example in docs/adding-a-model.md runs as written and passes the model contract."""

from __future__ import annotations

import json
import re
import shlex
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
    info = bench3d2d.model_info("maxproj_net")
    assert info.search_space == registry.DEFAULT_SEARCH_SPACE  # the space the shipped models were tuned over
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


def _shipped_table() -> str:
    """A stand-in for the shipped table, tuned with a smoke-sized budget: one trial of the smoke profile
    on synthetic-rpd (the real table's budget is hours of CPU)."""
    space = json.loads(json.dumps(registry.DEFAULT_SEARCH_SPACE))
    study = {"trials": 1, "profile": "smoke", "max_steps": None, "dataset": "synthetic-rpd",
             "fraction": 100.0, "seed": 0, "search_space": space}  # fmt: skip
    entry = {"optimizer": "sgd", "lr": 0.05, "_study": study}
    return json.dumps({"format": "bench3d2d-tuned-recipes/1", "recipes": {"fpbnet": entry}})


def _documented_commands(text: str) -> list[list[str]]:
    """The commands of the "A fair verdict" section's first console block, in order."""
    section = text.split("## A fair verdict", 1)[1]
    block = re.findall(r"```console\n(.*?)```", section, flags=re.S)[0]
    return [shlex.split(line[2:])[1:] for line in block.splitlines() if line.startswith("$ bench3d2d ")]


def test_the_fair_verdict_workflow_runs_as_documented(tmp_path, monkeypatch, capsys):
    """docs/adding-a-model.md, literally: check, tune with the shipped budget, run with --recipes, report.

    Only sizes are added: the shipped table is replaced by one tuned with a smoke budget (so that
    `tune` without options runs one smoke trial), and `run` gets a small grid (fpbnet and the new model,
    synthetic-rpd at 100 %, seed 0, no SSL, the smoke profile cut to 2 one-step rounds) instead of all.
    """
    from bench3d2d.engine import recipes

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    for var in (registry.PLUGINS_ENV, "BENCH3D2D_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH3D2D_THREADS", "1")
    monkeypatch.setattr(recipes, "_shipped_text", _shipped_table)
    text = DOC.read_text()
    (tmp_path / "my_models.py").write_text(re.findall(r"```python\n(.*?)```", text, flags=re.S)[0])
    cut = {"rounds": 2, "steps_per_round": 1, "top_k": 1}
    (tmp_path / "params.json").write_text(json.dumps({"fpbnet": cut, "maxproj_net": cut}))
    monkeypatch.chdir(tmp_path)
    check, tune, run, report = _documented_commands(text)
    small = ["--models", "fpbnet,maxproj_net", "--datasets", "rpd", "--fractions", "100", "--seeds", "0",
             "--pretrain", "none", "--profile", "smoke", "--params", "params.json",
             "--no-progress"]  # fmt: skip

    assert main(check) == 0 and "obeys the tensor contract" in capsys.readouterr().out
    untuned = [a for a in run if a not in ("--recipes", "my_recipes.json")]
    assert main([*untuned, *small]) == 2  # refused before anything runs, saying what to do
    err = capsys.readouterr().err
    assert "no tuned recipe for maxproj_net" in err and "--write-recipes my_recipes.json" in err
    assert (
        "--recipes my_recipes.json" in err and "--allow-untuned" in err and not Path("results/runs").exists()
    )

    assert main(tune) == 0
    printed = capsys.readouterr().out
    assert "the same budget as the shipped table's models" in printed
    study = json.loads(Path("my_recipes.json").read_text())["recipes"]["maxproj_net"]["_study"]
    assert (study["trials"], study["profile"], study["dataset"]) == (1, "smoke", "synthetic-rpd")

    assert main([*run, *small]) == 0
    for result in Path("results/runs").glob("*/result.json"):
        recipe = json.loads(result.read_text())["recipe"]
        expected = "my_recipes.json" if recipe["model"] == "maxproj_net" else "shipped table"
        assert recipe["source"] == "tuned" and recipe["table"] == expected

    assert main([*report, "--no-figures", "--bootstrap", "99"]) == 0
    board = "\n".join(p.read_text() for p in Path("board").rglob("*.md")).replace(
        "\\", ""
    )  # Markdown escapes
    assert "maxproj_net tuned (my_recipes.json)" in board and "fpbnet tuned (shipped table)" in board
    for name in [m for m in sys.modules if m.startswith("bench3d2d_plugin_my_models")]:
        monkeypatch.delitem(sys.modules, name)
