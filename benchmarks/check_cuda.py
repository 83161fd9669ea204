"""Check the GPU path end to end; run by a person with an NVIDIA GPU (under 10 minutes on one GPU).

    python benchmarks/check_cuda.py [--device cuda:0] [--models fpbnet ...] [--steps 5] [--batch 8]
                                    [--no-resume] [--no-sweep]

Checks, for every registered model (or --models), at the paper's crop and depth (32 x 256, depth
128, each enlarged to the model's size rule) and the paper's batch (8):

1. step: a few training steps (SGD, BCE) in every precision the device supports: float32 with
   TF32 off (strict), TF32 (compute capability 8.0+), bf16 autocast (native bf16 only) and float16
   autocast with a gradient scaler (a non-finite step is skipped by the scaler; at most half the
   steps may be skipped). Passes when the last loss and the gradients are finite. Reports the
   throughput (volumes per second after one warm-up step) and the peak GPU memory of each.
2. cpu: the same weights and the same batch in evaluation mode on the CPU (float32) and on the
   GPU in each precision; passes when the largest difference of the predicted probabilities is
   within the stated tolerance (float32 1e-3, TF32 5e-2, float16 5e-2, bf16 1e-1).
3. resume: the engine's fit (the paper profile cut to 3 rounds of 2 steps, its own precision)
   once straight through, and once stopped after its first validation and resumed from its
   checkpoint, both in deterministic mode; passes when the resumed run continues identically:
   the same validation history and bit-identical final weights.

Then one tiny sweep through the harness (the smoke profile cut to 1 round of 2 steps): two runs
with two subprocess workers on two devices (--devices) where two GPUs are visible, else one run
in-process.

Prints one table and exits 0 when everything passed, 1 when something failed, and 2 at once, with
a message, on a machine without CUDA (nothing is run there).

Engine options this script asks for where the engine has them: ``Compute(deterministic=True)``
(or the environment variable BENCH3D2D_DETERMINISTIC=1) for cuDNN's deterministic algorithms with
benchmarking off, and a profile field ``tf32`` (TF32 set explicitly). Without them the script sets
PyTorch's flags itself and says so in the table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench3d2d.engine import ArrayCases, Compute, FitOptions, build_model, fit
from bench3d2d.engine._precision import cuda_has_bf16
from bench3d2d.engine.profiles import PAPER, Profile
from bench3d2d.engine.tasks import segmentation
from bench3d2d.models import list_models, model_info

NO_CUDA = 2
#: Asks the engine for deterministic training (cuDNN deterministic algorithms, benchmark off).
DETERMINISTIC_ENV = "BENCH3D2D_DETERMINISTIC"
#: Largest allowed |p_gpu - p_cpu| of the predicted probabilities, per precision.
CPU_TOLERANCE = {"float32": 1e-3, "tf32": 5e-2, "float16": 5e-2, "bfloat16": 1e-1}
AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    """One line of the table."""

    check: str
    precision: str
    ok: bool
    detail: str
    model: str = ""
    throughput: str = ""
    memory: str = ""


def precisions(device: torch.device) -> list[str]:
    """The precisions to check on ``device``: float32, TF32 and bf16 where supported, float16."""
    out = ["float32"]
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        out.append("tf32")
    if device.type == "cuda" and cuda_has_bf16(device):
        out.append("bfloat16")
    return [*out, "float16"] if device.type == "cuda" else out


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 on or off for matrix products and cuDNN convolutions, restored afterwards."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def shape_for(name: str, profile: Profile = PAPER) -> tuple[int, int, int]:
    """(H, W, D) of a training crop of ``name``: the profile's crop and depth under the model's rule."""
    rule = model_info(name).size_rule
    h, w = rule.smallest_valid(*profile.crop)
    depth = max(profile.depth, rule.depth_min)
    return h, w, -(-depth // rule.depth_multiple) * rule.depth_multiple


def _batch(shape: tuple[int, int, int], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, *shape, generator=gen)
    y = (torch.rand(n, 1, *shape[:2], generator=gen) > 0.5).float()
    return x.to(device), y.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else ""


def _one_step(model, opt, scaler, batch, precision: str) -> tuple[float, bool]:
    """Forward, backward, step; returns (loss, gradients finite)."""
    x, y = batch
    opt.zero_grad(set_to_none=True)
    dtype = AUTOCAST.get(precision)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(opt)
    finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    if scaler is not None:
        scaler.step(opt)  # skipped by the scaler when the gradients are not finite
        scaler.update()
    elif finite:
        opt.step()
    return float(loss.detach()), finite


def train_step(
    name: str, precision: str, device: torch.device, steps: int = 5, batch: int = 2, profile: Profile = PAPER
) -> Row:
    """``steps`` training steps of ``name`` on random data in ``precision``; returns its table row
    (throughput from the steps after the first, peak GPU memory of the whole)."""
    try:
        shape = shape_for(name, profile)
        torch.manual_seed(0)
        model = build_model(name, shape[2]).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler(device.type) if precision == "float16" else None
        data = _batch(shape, batch, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with tf32(precision == "tf32"):
            results, seconds = _timed_steps(model, opt, scaler, data, precision, steps, device)
        losses, finite = zip(*results)
        skipped = sum(not f for f in finite)
        ok = math.isfinite(losses[-1]) and (finite[-1] or scaler is not None) and skipped <= steps // 2
        rate = f"{batch * (steps - 1) / seconds:.1f}" if steps > 1 and seconds > 0 else ""
        detail = f"loss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps, input {tuple(data[0].shape)}"
        if scaler is not None:
            detail += f", {skipped} step(s) skipped by the scaler (scale {scaler.get_scale():g})"
        elif skipped:
            detail += f", NON-FINITE GRADIENTS in {skipped} step(s)"
        return Row(f"step {name}", precision, ok, detail, name, rate, _peak_mib(device))
    except Exception as exc:  # a failing model is a table row, not the end of the check
        traceback.print_exc(file=sys.stderr)
        return Row(f"step {name}", precision, False, f"{type(exc).__name__}: {exc}"[:200], name)


def _timed_steps(
    model, opt, scaler, data, precision: str, steps: int, device: torch.device
) -> tuple[list[tuple[float, bool]], float]:
    """The steps' (loss, finite) pairs, and the seconds of all but the first (the warm-up)."""
    out = [_one_step(model, opt, scaler, data, precision)]
    _sync(device)
    t0 = time.perf_counter()
    out += [_one_step(model, opt, scaler, data, precision) for _ in range(steps - 1)]
    _sync(device)
    return out, time.perf_counter() - t0


@torch.no_grad()
def cpu_agreement(name: str, device: torch.device, precs: list[str], profile: Profile = PAPER) -> list[Row]:
    """One row per precision: the GPU's probabilities against the CPU's (float32), same weights
    and batch (one volume), evaluation mode."""
    try:
        shape = shape_for(name, profile)
        torch.manual_seed(0)
        cpu_model = build_model(name, shape[2]).eval()
        gpu_model = copy.deepcopy(cpu_model).to(device)
        x, _ = _batch(shape, 1, torch.device("cpu"))
        with tf32(False):
            ref = torch.sigmoid(cpu_model(x).float())
        rows = []
        for prec in precs:
            dtype = AUTOCAST.get(prec)
            with tf32(prec == "tf32"), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                p = torch.sigmoid(gpu_model(x.to(device)).float()).cpu()
            diff = (p - ref).abs()
            tol = CPU_TOLERANCE[prec]
            ok = bool(torch.isfinite(p).all()) and float(diff.max()) <= tol
            worst, mean = float(diff.max()), float(diff.mean())
            detail = f"max |p_gpu - p_cpu| {worst:.2e} (tolerance {tol:g}), mean {mean:.2e}"
            rows.append(Row(f"cpu {name}", prec, ok, detail, name))
        return rows
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return [Row(f"cpu {name}", "?", False, f"{type(exc).__name__}: {exc}"[:200], name)]


@contextmanager
def deterministic(device: torch.device) -> Iterator[tuple[Compute, str]]:
    """The engine's compute settings in deterministic mode, and how it was asked for; PyTorch's
    flags are restored afterwards (the other checks measure the default, faster mode).

    Uses ``Compute(deterministic=True)`` where the engine has it; otherwise sets
    ``BENCH3D2D_DETERMINISTIC=1`` and PyTorch's deterministic flags here (the engine may still turn
    cuDNN's benchmark on, which the table then says).
    """
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, os.environ.get(DETERMINISTIC_ENV))  # fmt: skip
    os.environ[DETERMINISTIC_ENV] = "1"
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        if "deterministic" in {f.name for f in dataclasses.fields(Compute)}:
            yield Compute(device=device, deterministic=True), "Compute(deterministic=True)"  # type: ignore[call-arg]
        else:
            yield Compute(device=device), f"{DETERMINISTIC_ENV}=1 and torch flags (no engine option yet)"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
        if before[3] is None:
            os.environ.pop(DETERMINISTIC_ENV, None)


def _toy_cases(shape: tuple[int, int, int], n: int, seed: int, prefix: str) -> ArrayCases:
    """``n`` volumes of ``shape`` with a bright band in depth under a random rectangle (the mask)."""
    rng = np.random.default_rng(seed)
    H, W, D = shape
    vols, masks = {}, {}
    for i in range(n):
        m = np.zeros((H, W), np.float32)
        h0, w0 = rng.integers(0, H // 2), rng.integers(0, W // 2)
        m[h0 : h0 + H // 3, w0 : w0 + W // 3] = 1
        v = rng.standard_normal(shape).astype(np.float32)
        v[..., D // 3 : D // 2] += 2.0 * m[..., None]
        vols[f"{prefix}{i}"], masks[f"{prefix}{i}"] = v, m
    return ArrayCases(vols, {"mask": masks}, {c: (0.1, 0.02, 0.01) for c in vols}, {c: c for c in vols})


def _tf32_off(profile: Profile) -> tuple[Profile, str]:
    """``profile`` with TF32 off where profiles have a ``tf32`` field; else PyTorch's flags do it."""
    if "tf32" in {f.name for f in dataclasses.fields(Profile)}:
        return profile.with_overrides({"tf32": False}), "the profile's tf32 field"
    return profile, "torch flags (no profile field yet)"


class _Stop(Exception):
    """Stands in for a kill right after the first validation (``last.pt`` is written by then)."""


def resume_check(name: str, device: torch.device, folder: Path, base: Profile = PAPER) -> Row:
    """fit straight through vs stopped after the first validation and resumed: identical?"""
    try:
        shape = shape_for(name, base)
        profile = base.with_overrides({"rounds": 3, "steps_per_round": 2, "batch_size": 2, "top_k": 2,
                                        "eval_batch": 2, "crop": list(shape[:2])})  # fmt: skip
        profile, tf32_how = _tf32_off(profile)
        train, val = _toy_cases(shape, 4, 1, "t"), _toy_cases(shape, 2, 2, "v")

        def run(out: Path, options: FitOptions, on_validation: Callable[[int, float], None] | None = None):
            torch.manual_seed(0)
            model = build_model(name, shape[2])
            return model, fit(
                model, segmentation(), train, val, options, out_dir=out, on_validation=on_validation
            )

        with deterministic(device) as (compute, how), tf32(False):
            options = FitOptions(profile, seed=0, compute=compute)
            straight_model, straight = run(folder / "straight", options)
            with suppress(_Stop):
                run(folder / "resumed", options, lambda step, score: (_ for _ in ()).throw(_Stop(step)))
            resumed_model, resumed = run(folder / "resumed", options)
            benchmark_after = torch.backends.cudnn.benchmark
        a, b = straight_model.state_dict(), resumed_model.state_dict()
        same = all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a) and straight.history == resumed.history
        worst = max((float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point()),
                    default=0.0)  # fmt: skip
        detail = (
            f"resumed from step {resumed.resumed_from_step} of {straight.steps}; "
            f"{'identical' if same else f'NOT identical (max weight difference {worst:.2e})'}; "
            f"deterministic via {how}; cudnn.benchmark {benchmark_after} after fit; TF32 off via {tf32_how}"
        )
        label = straight.precision.get("dtype", "?") + (
            " + scaler" if straight.precision.get("grad_scaler") else ""
        )
        return Row(f"resume {name}", label, same and resumed.resumed_from_step > 0, detail, name)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return Row(f"resume {name}", "?", False, f"{type(exc).__name__}: {exc}"[:200], name)


def tiny_sweep(folder: Path) -> Row:
    """fpbnet on the ``rpd`` benchmark through the harness: two subprocess workers on two devices
    where two GPUs are visible (one run each), else one run in this process."""
    from bench3d2d.harness.executors import LocalExecutor, SubprocessExecutor, SweepProgress
    from bench3d2d.harness.sweep import PlanOptions, ResultsStore, RunState, expand_plan, run_sweep

    two = torch.cuda.device_count() >= 2
    name = "sweep (harness, " + ("2 workers on cuda:0,cuda:1)" if two else "in-process)")
    try:
        store = ResultsStore(folder / "results")
        short = PlanOptions(
            hparams_for=lambda *_: {"rounds": 1, "steps_per_round": 2, "top_k": 1}, recipe="common"
        )
        plan = expand_plan("fpbnet", "20,100" if two else "100", "rpd", "none", "0", "smoke", short)
        executor = SubprocessExecutor(devices=("cuda:0", "cuda:1")) if two else LocalExecutor()
        report = run_sweep(
            plan, store, executor=executor, progress=SweepProgress(len(plan.runs), enabled=False)
        )
        states = [store.state(s.run_id) for s in plan.runs]
        precision = (store.result(plan.runs[0].run_id) or {}).get("precision") or {}
        done = sum(s is RunState.COMPLETE for s in states)
        detail = f"{done}/{len(states)} runs complete in {report.seconds:.0f} s"
        used = _worker_devices(store, plan.runs) if two else {"this process"}
        ok = all(s is RunState.COMPLETE for s in states) and (not two or len(used) == 2)
        detail += f", devices {', '.join(sorted(used))}"
        for o in report.failed:
            detail += f"; failed {o.id}: {o.error}"[:200]
        label = precision.get("dtype", "?") + (" + scaler" if precision.get("grad_scaler") else "")
        return Row(name, label, ok, detail)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return Row(name, "?", False, f"{type(exc).__name__}: {exc}"[:200])


def _worker_devices(store, specs) -> set[str]:
    """The devices the workers' ``worker.out`` files name (their first line)."""
    used = set()
    for spec in specs:
        path = store.run_dir(spec.run_id) / "worker.out"
        head = path.read_text(errors="replace").splitlines()[:1] if path.exists() else []
        used |= {line.rsplit(" on ", 1)[-1] for line in head if " on " in line}
    return used


def print_table(rows: list[Row]) -> None:
    """The rows as one plain-text table."""
    head = ("check", "precision", "result", "vol/s", "peak MiB", "detail")
    cells = [(r.check, r.precision, "ok" if r.ok else "FAIL", r.throughput, r.memory, r.detail) for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(5)]
    for line in [head, (*("-" * w for w in widths), "-" * 6), *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(line[:5], widths)) + "  " + line[5])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="check_cuda.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--models", nargs="*", default=None, help="models to check (default: all registered)")
    p.add_argument("--steps", type=int, default=5, help="training steps per model and precision (default 5)")
    p.add_argument(
        "--batch", type=int, default=PAPER.batch_for("segmentation"), help="batch (default: the paper's, 8)"
    )
    p.add_argument("--no-resume", action="store_true", help="skip the resume checks")
    p.add_argument("--no-sweep", action="store_true", help="skip the tiny sweep")
    return p


def _no_cuda_message() -> str:
    return (
        f"check_cuda: CUDA is not available here (torch {torch.__version__}, built for CUDA "
        f"{torch.version.cuda or 'none'}), so there is nothing to check. Run this script on a "
        "machine with an NVIDIA GPU and a CUDA build of PyTorch."
    )


def run_checks(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Every check of the module docstring, in order; one row each."""
    precs = precisions(device)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench3d2d-check-cuda-") as tmp:
        for name in args.models or list_models():
            rows += [train_step(name, prec, device, args.steps, args.batch) for prec in precs]
            rows += cpu_agreement(name, device, precs)
            if not args.no_resume:
                rows.append(resume_check(name, device, Path(tmp) / name))
        if not args.no_sweep:
            rows.append(tiny_sweep(Path(tmp)))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the checks; 0 all passed, 1 something failed, 2 no CUDA here."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, read at its start
    if not torch.cuda.is_available():
        print(_no_cuda_message(), file=sys.stderr)
        return NO_CUDA
    device = torch.device(args.device)
    torch.cuda.set_device(device)
    print(
        f"device {device}: {torch.cuda.get_device_name(device)}, compute capability "
        f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s) visible"
    )
    t0 = time.perf_counter()
    rows = run_checks(args, device)
    print_table(rows)
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks passed in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
