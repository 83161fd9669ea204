"""Model plugins from the command line: ``--plugin MODULE_OR_FILE`` and ``BENCH3D2D_PLUGINS``.

A model written in a single file, never packaged, trains through ``bench3d2d run`` in worker
processes (the subprocess executor) on the real engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench3d2d.cli import main
from bench3d2d.harness.executors import SubprocessExecutor, _submitit_work
from bench3d2d.models import _registry as registry
from bench3d2d.models import load_plugin, plugin_specs

PLUGIN = textwrap.dedent(
    '''
    """A user's own model, in one file."""
    import torch
    from torch import nn

    from bench3d2d import register_model


    class MeanDepthNet(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.head = nn.Conv2d(in_channels, out_channels, 1)

        def forward(self, x):
            return self.head(x.mean(dim=-1))


    @register_model(description="mean over depth, then a 1x1 convolution", tags=("test",))
    def {name}(in_channels=1, out_channels=1, depth=None, **kwargs):
        return MeanDepthNet(in_channels, out_channels)
    '''
)


@pytest.fixture
def scratch(monkeypatch):
    """Registrations and plugins of a test are forgotten afterwards; no inherited plugin list."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    yield registry
    for name in [m for m in sys.modules if m.startswith("bench3d2d_plugin_")]:
        monkeypatch.delitem(sys.modules, name)


def _write(folder: Path, name: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(PLUGIN.format(name=name))
    return path


def test_a_plugin_file_registers_its_model_once(tmp_path, scratch):
    path = _write(tmp_path, "file_net")
    module = load_plugin(path)
    assert load_plugin(str(path)) is module  # the same file is imported once
    assert "file_net" in registry.list_models()
    assert registry.model_info("file_net").source == f"{module.__name__}:file_net"
    assert plugin_specs() == [str(path.resolve())]


def test_plugins_from_the_environment_and_by_module_name(tmp_path, scratch, monkeypatch):
    env_file = _write(tmp_path, "env_net")
    (tmp_path / "pkg_dir").mkdir()
    _write(tmp_path / "pkg_dir", "module_net")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg_dir"))
    monkeypatch.delitem(sys.modules, "module_net", raising=False)
    monkeypatch.setenv(registry.PLUGINS_ENV, os.pathsep.join([str(env_file), "module_net"]))
    assert {"env_net", "module_net"} <= set(registry.list_models())  # read on the first lookup
    assert plugin_specs() == [str(env_file.resolve()), "module_net"]
    # The subprocess executor's workers get the same list.
    env = SubprocessExecutor(jobs=1)._env()
    assert env[registry.PLUGINS_ENV].split(os.pathsep) == [str(env_file.resolve()), "module_net"]


def test_a_broken_plugin_is_a_clear_error_naming_it(tmp_path, scratch, capsys, monkeypatch):
    bad = tmp_path / "bad_net.py"
    bad.write_text("import torch\n\nraise RuntimeError('weights not found')\n")
    with pytest.raises(registry.PluginError, match=r"bad_net\.py failed to import \(line 3\): RuntimeError"):
        load_plugin(bad)
    assert not [m for m in sys.modules if m.startswith("bench3d2d_plugin_bad_net")]
    assert main(["models", "--plugin", str(bad)]) == 2
    assert f"plugin file {bad} failed to import" in capsys.readouterr().err
    with pytest.raises(registry.PluginError, match="does not exist"):
        load_plugin(tmp_path / "missing.py")
    with pytest.raises(registry.PluginError, match="'no_such_plugin_module' not found"):
        load_plugin("no_such_plugin_module")
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(registry.PluginError, match=r"needs_dep\.py failed to import \(line 1\): ModuleNotF"):
        load_plugin(tmp_path / "needs_dep.py")
    monkeypatch.syspath_prepend(str(tmp_path))  # the same as a module: found, but its import fails
    monkeypatch.delitem(sys.modules, "needs_dep", raising=False)
    with pytest.raises(registry.PluginError, match="module 'needs_dep' failed to import: ModuleNotFound"):
        load_plugin("needs_dep")


def test_plugin_option_before_and_after_the_command(tmp_path, scratch, capsys):
    one, two = _write(tmp_path, "first_net"), _write(tmp_path, "second_net")
    assert main(["--plugin", str(one), "models", "*_net", "--plugin", str(two), "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert {"first_net", "second_net"} <= set(names)


def test_the_submitit_function_loads_the_plugins_first(tmp_path, scratch, fake_env):
    from bench3d2d.harness.sweep import ResultsStore, expand_plan

    path = _write(tmp_path, "slurm_net")
    load_plugin(path)
    spec = expand_plan(models="slurm_net", fractions="20", datasets="rpd", pretrain="none", seeds="0").runs[0]
    store = ResultsStore(tmp_path / "results")
    store.write_spec(spec)
    registry._REGISTRY.pop("slurm_net")
    registry._PLUGINS.clear()  # as in a fresh job process
    sys.modules.pop(next(m for m in sys.modules if m.startswith("bench3d2d_plugin_slurm_net")))
    outcome = _submitit_work(str(store.root), "run", spec.run_id, 600.0, (str(path),))
    assert outcome.status == "complete" and "slurm_net" in registry._REGISTRY


@pytest.mark.slow  # about 15 s: two processes start, one trains
def test_a_model_in_one_file_trains_through_run_with_the_subprocess_executor(tmp_path):
    path = _write(tmp_path, "my_file_net")
    params = tmp_path / "params.json"  # the smoke profile, cut to 2 rounds of 1 step and a top-1
    params.write_text(json.dumps({"my_file_net": {"rounds": 2, "steps_per_round": 1, "top_k": 1}}))
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k not in (registry.PLUGINS_ENV, "BENCH3D2D_BACKEND")}
    env["BENCH3D2D_THREADS"] = "1"
    cmd = [sys.executable, "-m", "bench3d2d", "run", "--plugin", str(path), "--models", "my_file_net",
           "--datasets", "rpd", "--fractions", "20", "--pretrain", "none", "--profile", "smoke",
           "--seeds", "0",
           "--params", str(params), "--executor", "subprocess", "--out", str(out),
           "--no-progress", "--allow-untuned"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (out / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "complete"
    assert json.loads((run_dir / "spec.json").read_text())["model"] == "my_file_net"
    assert (run_dir / "worker.out").is_file()  # it ran in a worker process, which loaded the file
    assert (run_dir / "cases.csv").is_file()


@pytest.mark.parametrize("taken", ["ipn", "fpbnet"])
def test_a_plugin_named_like_a_built_in_is_an_error_naming_both(tmp_path, taken):
    """Names are owned: in a fresh process (the plugin is imported before any lookup, as `--plugin`
    does), the plugin fails naming itself and the built-in, and every built-in model stays."""
    path = _write(tmp_path, taken)
    env = {k: v for k, v in os.environ.items() if k not in (registry.PLUGINS_ENV, "BENCH3D2D_BACKEND")}
    code = (
        "import sys, bench3d2d.models as m\n"
        "try:\n    m.load_plugin(sys.argv[1])\nexcept m.PluginError as e:\n    print('ERROR', e)\n"
        "print('MODELS', ','.join(m.list_models()))\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, str(path)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert f"model name {taken!r} is already registered by the built-in model" in error
    assert f"plugin file {path} cannot register it again" in error
    models = next(line for line in proc.stdout.splitlines() if line.startswith("MODELS")).split()[1]
    assert {"fpbnet", "ipn", "ipnv2", "lachinov", "resensnet", "enface_unet"} <= set(models.split(","))


def test_the_command_line_refuses_a_plugin_that_reuses_a_name(tmp_path, scratch, capsys):
    path = _write(tmp_path, "ipnv2")
    assert main(["models", "--plugin", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'ipnv2' is already registered by the built-in model bench3d2d.baselines.ipnv2" in err
    assert f"plugin file {path}" in err
    assert registry.model_info("ipnv2").source.startswith("bench3d2d.baselines.ipnv2")
