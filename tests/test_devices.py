"""One GPU per worker: ``run --devices`` gives each subprocess worker its own device (fake device
lists: no GPU is needed), ``--jobs`` follows the devices, the estimate counts them, SLURM keeps
one GPU per job."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from bench3d2d.commands.run import slurm_parameters
from bench3d2d.harness._devices import device_env, parallel_devices, parse_devices
from bench3d2d.harness.executors import SubprocessExecutor, SweepProgress, make_executor
from bench3d2d.harness.sweep import ResultsStore, expand_plan, select_work

#: A stand-in for ``python -m bench3d2d run-one ROOT ID ...``: records the GPU its worker sees
#: and when it ran, then prints the outcome line the executor reads.
FAKE_WORKER = """#!{python}
import json, os, sys, time
ident = sys.argv[5]
start = time.time()
time.sleep(1.0)
with open(os.path.join(os.environ["FAKE_DEVICE_LOG"], ident), "w") as fh:
    fh.write(f"{{os.environ.get('CUDA_VISIBLE_DEVICES', '-')}} {{start}} {{time.time()}}")
print(json.dumps({{"kind": "run", "id": ident, "status": "complete", "label": ident}}), flush=True)
"""


def _plan(n: int):
    fractions = ",".join(str(f) for f in (5, 10, 20, 100, 30, 40, 50, 60)[:n])
    plan = expand_plan(models="fpbnet", fractions=fractions, datasets="ga", pretrain="none", seeds="0")
    assert len(plan.runs) == n
    return plan


@pytest.fixture()
def fake_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """The fake worker's interpreter path and the folder where each worker logs its device."""
    script = tmp_path / "fake-python"
    script.write_text(FAKE_WORKER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "devices"
    log.mkdir()
    monkeypatch.setenv("FAKE_DEVICE_LOG", str(log))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return str(script), log


def _runs(log: Path) -> dict[str, tuple[str, float, float]]:
    out = {}
    for path in log.iterdir():
        device, start, end = path.read_text().split()
        out[path.name] = (device, float(start), float(end))
    return out


def test_four_workers_on_four_devices(tmp_path, fake_worker):
    """``--devices cuda:0,...,cuda:3``: four workers at once, each seeing its own GPU alone."""
    python, log = fake_worker
    executor = make_executor(
        "subprocess", devices=parse_devices("cuda:0,cuda:1,cuda:2,cuda:3"), python=python
    )
    assert executor.jobs == 4  # --jobs defaults to the number of devices
    items = _plan(4).runs
    outcomes = executor.map(items, ResultsStore(tmp_path / "results"), SweepProgress(4, enabled=False))
    assert [o.status for o in outcomes] == ["complete"] * 4
    runs = _runs(log)
    assert sorted(device for device, _, _ in runs.values()) == ["0", "1", "2", "3"]
    assert max(s for _, s, _ in runs.values()) < min(e for _, _, e in runs.values())  # side by side
    assert (
        "worker slot"
        in (ResultsStore(tmp_path / "results").run_dir(items[0].run_id) / "worker.out").read_text()
    )


def test_a_freed_device_takes_the_next_run_and_is_never_shared(tmp_path, fake_worker):
    """Eight runs on four devices: each device runs two, one after the other."""
    python, log = fake_worker
    executor = SubprocessExecutor(devices=("cuda:0", "cuda:1", "cuda:2", "cuda:3"), python=python, poll=0.02)
    executor.map(_plan(8).runs, ResultsStore(tmp_path / "results"), SweepProgress(8, enabled=False))
    by_device: dict[str, list[tuple[float, float]]] = {}
    for device, start, end in _runs(log).values():
        by_device.setdefault(device, []).append((start, end))
    assert {d: len(v) for d, v in by_device.items()} == {"0": 2, "1": 2, "2": 2, "3": 2}
    for spans in by_device.values():
        first, second = sorted(spans)
        assert first[1] <= second[0] + 0.05  # the second run started after the first ended


def test_parse_devices_auto_and_errors():
    """``auto`` is every visible GPU; bad names and ``auto`` without a GPU are one-line errors."""
    assert parse_devices("auto", count=lambda: 4) == ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
    assert parse_devices(["cuda:1,cuda", "cpu"]) == ("cuda:1", "cuda:0", "cpu")
    assert parse_devices(None) == ()
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        parse_devices("auto", count=lambda: 0)
    with pytest.raises(ValueError, match="'gpu1' is not a device"):
        parse_devices("cuda:0,gpu1")


def test_each_worker_sees_only_its_device():
    """``cuda:N`` counts the GPUs this process sees; ``cpu`` hides them all."""
    assert device_env("cuda:2", {}) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert device_env("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,5"}) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert device_env("cpu", {"CUDA_VISIBLE_DEVICES": "4,5"}) == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ValueError, match="shows 2 GPU"):
        device_env("cuda:2", {"CUDA_VISIBLE_DEVICES": "4,5"})


def test_the_estimate_counts_devices(tmp_path):
    """Four workers on four GPUs divide the time by four; four workers on one GPU do not."""
    from bench3d2d.harness.sweep import estimate_seconds

    store = ResultsStore(tmp_path)
    work = select_work(_plan(4), store)
    alone, _ = estimate_seconds(work, store, jobs=1)
    four, _ = estimate_seconds(work, store, jobs=4, devices=("cuda:0", "cuda:1", "cuda:2", "cuda:3"))
    shared, _ = estimate_seconds(work, store, jobs=4, devices=("cuda:0",) * 4)
    assert four == pytest.approx(alone / 4) and shared == pytest.approx(alone)
    assert parallel_devices(3, ()) == 3


def test_slurm_keeps_one_gpu_per_job():
    """SLURM allocates each job's GPU (``--slurm-gpus``, default 1); ``--devices`` is refused there."""
    from bench3d2d.cli import build_parser

    args = build_parser().parse_args(["run", "--executor", "slurm"])
    assert slurm_parameters(args)["gpus_per_node"] == 1
    with pytest.raises(ValueError, match="SLURM gives each job its own GPUs"):
        make_executor("slurm", devices=("cuda:0", "cuda:1"))
    with pytest.raises(ValueError, match="--devices needs --executor subprocess"):
        make_executor("local", devices=("cuda:0",))


def test_cli_dry_run_with_devices(tmp_path, capsys):
    """``run --devices ... --dry-run``: subprocess workers, one per device, in the estimate line."""
    from bench3d2d.cli import main

    argv = [
        "run",
        "--models",
        "fpbnet",
        "--datasets",
        "rpd",
        "--seeds",
        "0",
        "--out",
        str(tmp_path),
        "--dry-run",
    ]
    assert main([*argv, "--devices", "cuda:0,cuda:1,cuda:2,cuda:3"]) == 0
    assert "with 4 worker(s) on 4 device(s)" in capsys.readouterr().out
    assert main([*argv, "--devices", "cuda:0,cuda:0", "--jobs", "2"]) == 0
    assert "with 2 worker(s) on 1 device(s)" in capsys.readouterr().out
    assert main([*argv, "--devices", "gpu0"]) == 2
    assert "'gpu0' is not a device" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
