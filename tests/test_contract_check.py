"""``bench3d2d models --check``: the tensor contract, checked on any model, naming the model and the rule."""

from __future__ import annotations

import sys
import textwrap

import pytest

from bench3d2d.cli import main
from bench3d2d.models import ContractError, check_contract
from bench3d2d.models import _registry as registry

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    from bench3d2d import register_model


    class Net(nn.Module):
        def __init__(self, how):
            super().__init__()
            self.how = how
            self.head = nn.Conv2d(1, 1, 3, padding=1)
            self.unused = nn.Linear(2, 2)
            if how == "shifted":
                with torch.no_grad():
                    self.head.weight.mul_(0.01)
                    self.head.bias.fill_(0.5)

        def forward(self, x):
            y = self.head(x.mean(dim=-1))
            if self.how == "half":
                return y[:, :, ::2, ::2]
            if self.how == "sigmoid":
                return torch.sigmoid(y)
            if self.how == "dead":
                return y
            if self.how == "shifted":  # logits that happen to lie in [0, 1] at initialisation
                return y + 0.0 * sum(p.sum() for p in self.unused.parameters())
            return y + 0.0 * sum(p.sum() for p in self.unused.parameters())


    @register_model(h_multiple=4)
    def good_net(in_channels=1, out_channels=1, depth=None, **kw):
        return Net("good")


    @register_model
    def half_net(in_channels=1, out_channels=1, depth=None, **kw):
        return Net("half")


    @register_model
    def sigmoid_net(in_channels=1, out_channels=1, depth=None, **kw):
        return Net("sigmoid")


    @register_model
    def dead_net(in_channels=1, out_channels=1, depth=None, **kw):
        return Net("dead")


    @register_model
    def shifted_net(in_channels=1, out_channels=1, depth=None, **kw):
        return Net("shifted")
    """
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    path = tmp_path / "contract_models.py"
    path.write_text(MODELS)
    yield path
    for name in [m for m in sys.modules if m.startswith("bench3d2d_plugin_contract_models")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (
            "half_net",
            r"output shape \(2, 1, 4, 16\) for input \(2, 1, 8, 32, 64\); the rule is \(B, K, H, W\)",
        ),
        ("sigmoid_net", r"outputs all lie in \[0, 1\] \(probabilities\?\); the rule is logits"),
        ("dead_net", r"no gradient reaches parameter\(s\) unused.weight, unused.bias"),
    ],
)
def test_models_check_rejects_a_broken_model_in_one_line(plugin, capsys, name, rule):
    assert main(["models", name, "--check", "--profile", "smoke", "--plugin", str(plugin)]) == 1
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert out.startswith(f"model '{name}' breaks the tensor contract: ")
    assert __import__("re").search(rule, out), out


def test_models_check_passes_a_good_model_and_the_built_ins(plugin, capsys):
    argv = [
        "models",
        "good_net,shifted_net,fpbnet,lachinov",
        "--check",
        "--profile",
        "smoke",
        "--plugin",
        str(plugin),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model 'good_net' obeys the tensor contract (profile smoke: depth 64, crop 8 x 32)" in out
    assert "model 'shifted_net' obeys the tensor contract" in out  # in [0, 1] by chance, not by a sigmoid
    with pytest.raises(ContractError, match="model 'half_net' breaks the tensor contract"):
        check_contract("half_net", 8, 32, 16)


def test_a_model_that_ignores_its_declared_size_rule_is_named(plugin, monkeypatch):
    """A model that checks sizes itself (size_rule set) but does not reject what its rule forbids."""
    from bench3d2d.models import load_plugin

    module = load_plugin(plugin)
    real = registry.model_info("good_net").factory

    def lax(**kwargs):
        model = real(**kwargs)
        model.size_rule = registry.model_info("good_net").size_rule  # no hook: nothing is checked
        return model

    rule = registry.model_info("good_net").size_rule
    info = registry.ModelInfo("good_net", lax, rule, source=f"{module.__name__}:good_net")
    monkeypatch.setitem(registry._REGISTRY, "good_net", info)
    with pytest.raises(ContractError, match=r"it accepts input \(1, 1, 9, 32, 16\), which its declared rule"):
        check_contract("good_net", 8, 32, 16)


def test_run_checks_the_contract_before_the_first_run(plugin, tmp_path, fake_env, capsys):
    """The dry run and the run refuse a plan with a broken model, naming it, before anything trains."""
    out = tmp_path / "results"
    argv = ["run", "--plugin", str(plugin), "--models", "fpbnet,half_net", "--datasets", "rpd", "--fractions",
            "100", "--pretrain", "none", "--seeds", "0", "--profile", "smoke", "--recipe", "common",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "bench3d2d: error: model 'half_net' breaks the tensor contract: output shape" in err
    assert "fpbnet" not in err
    assert main(argv) == 2
    assert "half_net" in capsys.readouterr().err
    assert not list(fake_env.iterdir()) and not (out / "runs").exists()  # nothing ran
