"""Check the CUDA path end to end; run by a person with an NVIDIA GPU (a minute or two).

    python benchmarks/check_cuda.py [--device cuda:0] [--models fpbnet ...] [--no-sweep]

1. One training step of every registered model (or ``--models``) in each precision the device
   supports: float32, bf16 autocast (devices with native bf16, compute capability 8.0+) and
   float16 autocast with a gradient scaler (every CUDA device); batch 2 of the smoke profile's
   crop, the model's smallest valid depth, BCE loss, SGD. A step passes when it finishes with a
   finite loss and finite gradients.
2. One tiny sweep through the harness, in-process, into a temporary folder: fpbnet on the
   ``rpd`` benchmark at 100 % labels, smoke profile cut to 1 round of 2 steps, top-1; it passes
   when the run completes, and the precision the engine chose (``result.json``'s ``precision``)
   is printed.

Prints one table and exits 0 when everything passed, 1 when something failed, and 2 at once, with
a message, on a machine without CUDA (nothing is run there).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench3d2d.engine import build_model
from bench3d2d.engine._precision import cuda_has_bf16
from bench3d2d.engine.profiles import SMOKE
from bench3d2d.models import list_models, model_info

NO_CUDA = 2


@dataclass
class Row:
    """One line of the table."""

    check: str
    precision: str
    ok: bool
    detail: str


def precisions(device: torch.device) -> list[str]:
    """The precisions to check on ``device``: float32, bfloat16 where native, float16."""
    out = ["float32"]
    if cuda_has_bf16(device):
        out.append("bfloat16")
    return [*out, "float16"]


def _shape(name: str) -> tuple[int, int, int]:
    rule = model_info(name).size_rule
    h, w = rule.smallest_valid(*SMOKE.crop)
    depth = max(SMOKE.depth, rule.depth_min)
    depth = -(-depth // rule.depth_multiple) * rule.depth_multiple
    return h, w, depth


def _attempt(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batch: tuple[torch.Tensor, torch.Tensor],
    dtype: torch.dtype | None,
) -> tuple[float, bool, str]:
    """Forward, backward, step; returns (loss, gradients finite, logits dtype)."""
    x, y = batch
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    if scaler is not None:
        scaler.step(opt)  # skipped by the scaler when the gradients overflowed
        scaler.update()
    elif finite:
        opt.step()
    return float(loss.detach()), finite, str(logits.dtype).removeprefix("torch.")


def train_step(name: str, precision: str, device: torch.device) -> Row:
    """One optimiser step of ``name`` on random data in ``precision``; returns its table row.

    Under float16 the gradient scaler may skip the first steps (overflow at its initial scale,
    then halved); up to 24 such attempts are allowed and reported.
    """
    try:
        h, w, d = _shape(name)
        torch.manual_seed(0)
        model = build_model(name, d).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        batch = (
            torch.randn(2, 1, h, w, d, device=device),
            (torch.rand(2, 1, h, w, device=device) > 0.5).float(),
        )
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
        scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        t0 = time.perf_counter()
        tries, limit = 0, 24 if scaler is not None else 1
        while True:
            tries += 1
            value, finite, out_dtype = _attempt(model, opt, scaler, batch, dtype)
            if finite or not math.isfinite(value) or tries == limit:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        ok = math.isfinite(value) and finite
        detail = f"loss {value:.4f}, {seconds:.2f} s, input {tuple(batch[0].shape)}, logits {out_dtype}"
        if scaler is not None:
            detail += f", scale {scaler.get_scale():g} after {tries - 1} skipped"
        if not finite:
            detail += ", NON-FINITE GRADIENTS"
        return Row(f"step {name}", precision, ok, detail)
    except Exception as exc:  # a failing model is a table row, not the end of the check
        traceback.print_exc(file=sys.stderr)
        return Row(f"step {name}", precision, False, f"{type(exc).__name__}: {exc}"[:200])


def tiny_sweep(folder: Path) -> Row:
    """One fpbnet run of the ``rpd`` benchmark through the harness (in-process) into ``folder``."""
    from bench3d2d.harness.executors import SweepProgress
    from bench3d2d.harness.sweep import ResultsStore, RunState, expand_plan, run_sweep

    try:
        store = ResultsStore(folder / "results")
        plan = expand_plan(
            models="fpbnet",
            fractions="100",
            datasets="rpd",
            pretrain="none",
            profile="smoke",
            hparams_for=lambda *_: {"rounds": 1, "steps_per_round": 2, "top_k": 1},
        )
        run_sweep(plan, store, progress=SweepProgress(len(plan.runs), enabled=False))
        spec = plan.runs[0]
        state = store.state(spec.run_id)
        result = store.result(spec.run_id) or {}
        prec = result.get("precision") or {}
        label = prec.get("dtype", "?") + (" + grad scaler" if prec.get("grad_scaler") else "")
        dice = "?"
        if state is RunState.COMPLETE:
            cases = store.cases([spec.run_id])
            dice = f"{cases[cases['metric'] == 'dice']['value'].mean():.3f}"
        detail = (
            f"{len(plan.runs)} run {state.value}, device {prec.get('device', '?')}, "
            f"accelerated {prec.get('accelerated', '?')}, mean Dice {dice}"
        )
        if state is not RunState.COMPLETE:
            err = store.error(spec.run_id) or {}
            detail += f": {err.get('type', '')} {err.get('message', '')}"[:200]
        return Row("sweep (harness, smoke 1x2)", label, state is RunState.COMPLETE, detail)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return Row("sweep (harness, smoke 1x2)", "?", False, f"{type(exc).__name__}: {exc}"[:200])


def print_table(rows: list[Row]) -> None:
    """The rows as a plain-text table."""
    head = ("check", "precision", "result", "detail")
    cells = [(r.check, r.precision, "ok" if r.ok else "FAIL", r.detail) for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(3)]
    for line in [head, (*("-" * w for w in widths), "-" * 6), *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(line[:3], widths)) + "  " + line[3])


def main(argv: list[str] | None = None) -> int:
    """Run the checks; 0 all passed, 1 something failed, 2 no CUDA here."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--models", nargs="*", default=None, help="models to step (default: all registered)")
    p.add_argument("--no-sweep", action="store_true", help="skip the tiny sweep")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            f"check_cuda: CUDA is not available here (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}), so there is nothing to check. Run this script on a "
            "machine with an NVIDIA GPU and a CUDA build of PyTorch.",
            file=sys.stderr,
        )
        return NO_CUDA
    device = torch.device(args.device)
    torch.cuda.set_device(device)
    print(
        f"device {device}: {torch.cuda.get_device_name(device)}, compute capability "
        f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}"
    )
    rows = [
        train_step(name, prec, device)
        for name in (args.models or list_models())
        for prec in precisions(device)
    ]
    if not args.no_sweep:
        with tempfile.TemporaryDirectory(prefix="bench3d2d-check-cuda-") as tmp:
            rows.append(tiny_sweep(Path(tmp)))
    print_table(rows)
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
