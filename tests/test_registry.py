"""Registry behaviour: lookup, wildcards, errors, duplicates and entry-point plugins."""

from __future__ import annotations

import sys
import textwrap

import pytest
from torch import nn

import bench3d2d
from bench3d2d.models import _registry as registry
from bench3d2d.models._registry import DuplicateModelError, UnknownModelError


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made inside a test are discarded afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ENTRY_POINT_ERRORS", dict(registry._ENTRY_POINT_ERRORS))
    return registry


def test_public_api_is_exported():
    for name in ("create_model", "list_models", "model_info", "register_model"):
        assert callable(getattr(bench3d2d, name))


def test_list_models_wildcards_and_exclude():
    everything = bench3d2d.list_models()
    assert "fpbnet" in everything and everything == sorted(everything)
    assert bench3d2d.list_models("fpb*") == ["fpbnet"]
    assert "fpbnet" not in bench3d2d.list_models(exclude=["fpb*"])
    assert bench3d2d.list_models(["fpbnet", "nothing*"]) == ["fpbnet"]


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: fpbnet"):
        bench3d2d.create_model("fpbnett")


def test_duplicate_name_from_another_factory_raises(scratch_registry):
    def fpbnet(in_channels=1, out_channels=1, depth=None):
        return nn.Identity()

    with pytest.raises(DuplicateModelError, match="already registered"):
        bench3d2d.register_model(fpbnet)


def test_factory_must_accept_the_contract_arguments(scratch_registry):
    def bad_net(in_channels=1):
        return nn.Identity()

    with pytest.raises(TypeError, match="out_channels"):
        bench3d2d.register_model(bad_net)


def test_factory_kwargs_and_non_module_are_checked(scratch_registry):
    @bench3d2d.register_model(name="returns_int_net")
    def _factory(in_channels=1, out_channels=1, depth=None):
        return 3

    with pytest.raises(TypeError, match=r"not nn\.Module"):
        bench3d2d.create_model("returns_int_net")
    with pytest.raises(TypeError):
        bench3d2d.create_model("fpbnet", not_a_kwarg=1)


def test_depth_below_minimum_is_refused_at_build():
    with pytest.raises(bench3d2d.InputShapeError, match=r"depth >= 64"):
        bench3d2d.create_model("fpbnet", depth=32)


def test_third_party_model_gets_the_size_check(scratch_registry):
    import torch

    @bench3d2d.register_model(name="mean_net", h_multiple=2, depth={"min": 4})
    def _mean_net(in_channels=1, out_channels=1, depth=None):
        return MeanNet(in_channels, out_channels)

    model = bench3d2d.create_model("mean_net", depth=8)
    assert model(torch.randn(1, 1, 4, 5, 8)).shape == (1, 1, 4, 5)
    with pytest.raises(bench3d2d.InputShapeError, match="H = 3 is not a multiple of 2"):
        model(torch.randn(1, 1, 3, 5, 8))


class MeanNet(nn.Module):
    """Mean over depth and a 1x1 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.head(x.mean(-1))


PLUGIN_SOURCE = textwrap.dedent(
    '''
    from torch import nn
    from bench3d2d import register_model

    class TheirNet(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.head = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            return self.head(x.amax(-1))

    @register_model(paper="Someone et al.", reduction="max over depth")
    def their_net(in_channels=1, out_channels=1, depth=None, **kwargs):
        """A third-party network that max-projects the volume."""
        return TheirNet(in_channels, out_channels)
    '''
)


def test_entry_point_plugin_is_found_without_import(tmp_path, monkeypatch, scratch_registry):
    """An installed distribution advertising a model is loaded lazily by create_model."""
    import torch

    (tmp_path / "their_plugin.py").write_text(PLUGIN_SOURCE)
    dist = tmp_path / "their_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: their-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench3d2d.models]\ntheir_net = their_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.delitem(sys.modules, "their_plugin", raising=False)

    assert "their_plugin" not in sys.modules
    model = bench3d2d.create_model("their_net")
    assert "their_plugin" in sys.modules
    assert model(torch.randn(1, 1, 3, 5, 7)).shape == (1, 1, 3, 5)
    assert "their_net" in bench3d2d.list_models()
    assert bench3d2d.model_info("their_net").reduction == "max over depth"
    sys.modules.pop("their_plugin", None)


def test_broken_plugin_warns_and_names_itself(tmp_path, monkeypatch, scratch_registry):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency xyz')\n")
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench3d2d.models]\nbroken_net = broken_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    with (
        pytest.warns(RuntimeWarning, match="broken_net"),
        pytest.raises(UnknownModelError, match="missing dependency xyz"),
    ):
        bench3d2d.create_model("broken_net")
