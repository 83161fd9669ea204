"""Devices: autocast dtype per device, gradient scaling, acceleration on CPU only by default, the
precision record, and ``benchmarks/check_cuda.py`` on a machine without CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _engine_toy import TOY_PROFILE, toy_fit

from bench3d2d.engine import Compute
from bench3d2d.engine import _precision as prec
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine._fit import wants_acceleration
from bench3d2d.engine.acceleration import is_accelerated

ROOT = Path(__file__).resolve().parents[1]
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    ("bf16", "dtype", "scaler"), [(True, torch.bfloat16, False), (False, torch.float16, True)]
)
def test_cuda_dtype_follows_native_bf16_support(monkeypatch, bf16, dtype, scaler):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert prec.amp_dtype(CUDA, True) is dtype
    assert prec.needs_grad_scaler(CUDA, True) is scaler
    assert asked and not any(asked)  # emulated bf16 (V100, T4) does not count
    assert prec.amp_dtype(CUDA, False) is None and not prec.needs_grad_scaler(CUDA, False)
    record = prec.Precision.of(CUDA, True, accelerated=False).to_dict()
    assert record == {
        "dtype": str(dtype).removeprefix("torch."),
        "device": "cuda",
        "grad_scaler": scaler,
        "accelerated": False,
    }


@pytest.mark.parametrize("native", [True, False])
def test_cpu_dtype_is_bf16_only_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: native)
    assert prec.amp_dtype(CPU, True) is (torch.bfloat16 if native else None)
    assert not prec.needs_grad_scaler(CPU, True)
    p = prec.Precision.of(CPU, True, accelerated=True)
    assert p.dtype == ("bfloat16" if native else "float32") and p.device == "cpu" and p.accelerated
    assert p.describe() == ("bf16 autocast" if native else "float32")
    assert prec.amp_dtype(torch.device("meta"), True) is None  # other devices: float32


def test_acceleration_defaults_to_cpu_only():
    assert wants_acceleration(CPU, None) and not wants_acceleration(CUDA, None)
    assert wants_acceleration(CUDA, True) and not wants_acceleration(CPU, False)


def test_fit_records_precision_and_applies_acceleration_as_configured(tmp_path, monkeypatch):
    short = TOY_PROFILE.with_overrides({"rounds": 1})
    auto, _ = toy_fit(tmp_path / "auto", profile=short)
    assert auto.precision["device"] == "cpu" and auto.precision["accelerated"] is True
    assert auto.precision["dtype"] == ("bfloat16" if prec.cpu_has_native_bf16() else "float32")
    assert auto.precision["grad_scaler"] is False
    from bench3d2d.engine import _fit

    built = []
    real = _fit.make_optimizer
    monkeypatch.setattr(_fit, "make_optimizer", lambda model, p: built.append(model) or real(model, p))
    # float32: the plain model under CPU bf16 autocast gives intermittent non-finite gradients here
    off, _ = toy_fit(
        tmp_path / "off", profile=short.with_overrides({"amp": False}), compute=Compute(accelerate=False)
    )
    assert off.precision["accelerated"] is False and not is_accelerated(built[-1])


def test_grad_scaler_path_trains_saves_and_resumes(tmp_path, monkeypatch):
    """The float16 path's loss scaling, exercised on CPU (float32 compute, scaler forced on)."""
    monkeypatch.setattr(prec, "needs_grad_scaler", lambda device, enabled: True)
    res, cases = toy_fit(tmp_path / "a", profile=TOY_PROFILE.with_overrides({"amp": False}))
    assert res.precision["grad_scaler"] is True and res.steps == 6
    assert cases["dice"].notna().all()
    # the scaler state is part of the resumable state while the run is in progress
    with pytest.raises(RuntimeError, match="stop"):
        toy_fit(
            tmp_path / "b",
            profile=TOY_PROFILE.with_overrides({"amp": False}),
            on_validation=lambda step, score: (_ for _ in ()).throw(RuntimeError("stop")),
        )
    state = ckpt_io.read(tmp_path / "b" / "checkpoints" / "last.pt")
    assert "scaler" in state and state["scaler"]["scale"] > 0
    resumed, _ = toy_fit(tmp_path / "b", profile=TOY_PROFILE.with_overrides({"amp": False}))
    assert resumed.resumed_from_step == 2 and resumed.history == res.history


def test_check_cuda_script_stops_with_a_clear_message_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the script would run its checks")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "check_cuda.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "CUDA is not available" in out.stderr and "NVIDIA GPU" in out.stderr
    assert out.stdout == ""


def test_check_cuda_training_step_runs_in_float32_on_cpu():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import check_cuda
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from bench3d2d.engine.profiles import SMOKE

    row = check_cuda.train_step("fpbnet", "float32", CPU, steps=2, profile=SMOKE)
    assert row.ok, row.detail
    assert "loss" in row.detail and row.check == "step fpbnet" and float(row.throughput) > 0


def test_check_cuda_help_describes_every_check():
    """``check_cuda.py --help`` names the checks: precisions at the paper's crop, the CPU agreement and
    its tolerances, resume in deterministic mode, throughput and peak memory, the two-device sweep."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "check_cuda.py"), "--help"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    expected = (
        "paper's crop", "float32 with TF32 off", "bf16 autocast", "float16 autocast with a gradient scaler",
        "throughput", "peak GPU memory", "same weights and the same batch", "tolerance",
        "deterministic mode", "continues identically", "two subprocess workers on two devices",
        "one table", "exits 0", "2 at once", "under 10 minutes", "--no-resume", "--no-sweep",
    )  # fmt: skip
    for words in expected:
        assert words in text, words


def test_worker_reads_the_acceleration_choice_from_the_environment(monkeypatch):
    from bench3d2d.harness import _worker

    monkeypatch.setenv(_worker.THREADS_ENV, "2")
    monkeypatch.delenv(_worker.ACCELERATE_ENV, raising=False)
    assert _worker._compute() == Compute(threads=2, accelerate=None)
    monkeypatch.setenv(_worker.ACCELERATE_ENV, "on")
    assert _worker._compute().accelerate is True
    monkeypatch.setenv(_worker.ACCELERATE_ENV, "0")
    assert _worker._compute().accelerate is False
    monkeypatch.setenv(_worker.ACCELERATE_ENV, "maybe")
    with pytest.raises(ValueError, match="BENCH3D2D_ACCELERATE"):
        _worker._compute()
