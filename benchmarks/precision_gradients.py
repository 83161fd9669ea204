"""How far CPU float32 and bf16-autocast training gradients are from float64 ones, per model.

For every registered model (and a plain ``nn.Conv3d(256, 256, (3, 1, 1))``), with one set of weights
(fixed seed) and one realistic training batch (GA-S-1 quick data prepared at ``--depth``, cropped and
augmented as training does; ``--batch`` x 1 x crop x depth), the training-mode parameter gradients of
the segmentation loss are computed

* in float64 (the reference: a float64 copy of the model and input),
* in float32, and
* under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the engine's CPU mixed precision),

each with the model plain and after ``bench3d2d.engine.acceleration.accelerate(model)``, ``--repeats``
times with the same inputs and weights (to catch intermittent non-finite values). Reported per run: the
cosine similarity of all gradients (concatenated) with float64's, the smallest per-parameter cosine,
the relative error norm and whether any gradient is non-finite. The CPU's bf16 capabilities
(``torch.cpu._is_amx_tile_supported()``, ``torch.cpu._is_avx512_bf16_supported()``) are recorded.
Results for several invocations (``--models``) merge into one JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import bench3d2d
from bench3d2d.data import load_dataset, prepare
from bench3d2d.engine._sources import make_batch
from bench3d2d.engine.acceleration import accelerate
from bench3d2d.engine.losses import dice_bce_loss

CONV_CASE = "conv3d_256_k311"
#: Models whose size rule needs a larger en-face crop than the default.
MIN_CROP = {"ipnv2": (16, 32)}


def cpu_info() -> dict:
    """CPU model and the bf16 capabilities PyTorch sees."""
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    probe = {
        p: bool(getattr(torch.cpu, p, lambda: False)())
        for p in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    }
    return {
        "cpu": name,
        "torch": torch.__version__,
        **probe,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def case_inputs(name: str, args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    """Seeded float32 model (or the plain conv), its input and its target (None: linear test loss)."""
    torch.manual_seed(args.seed)
    if name == CONV_CASE:
        conv = nn.Conv3d(256, 256, (3, 1, 1), padding=(1, 0, 0))
        return conv, torch.randn(2, 256, 2, 2, 8), None
    model = bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=args.depth)
    crop = tuple(max(a, b) for a, b in zip(args.crop, MIN_CROP.get(name, (0, 0)), strict=True))
    prep = prepare(load_dataset("synthetic-ga-s-1", size="quick"), args.depth, args.cache)
    rng = np.random.default_rng(args.seed)
    ids = [prep.case_ids[i] for i in rng.integers(0, len(prep.case_ids), args.batch)]
    x, y = make_batch(prep, ids, "mask", crop, True, rng)
    return model, x, y


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, bf16: bool) -> tuple[float, dict]:
    """Loss and {name: float64 gradient} of one training-mode forward/backward."""
    model.train()
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        out = model(x)
        if y is None:  # plain conv: a fixed linear functional of the output
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            loss = (out.double() * g).sum() / g.numel() ** 0.5
        else:
            loss = dice_bce_loss(out, y.to(out.dtype) if out.dtype == torch.float64 else y)
    loss.backward()
    grads = {n: p.grad.detach().double().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def compare(grads: dict, ref: dict) -> dict:
    """Cosine (all gradients), smallest per-parameter cosine, relative error and non-finite names."""
    bad = [n for n, g in grads.items() if not bool(torch.isfinite(g).all())]
    a = torch.cat([grads[n].flatten() for n in ref])
    b = torch.cat([ref[n].flatten() for n in ref])
    finite = torch.isfinite(a).all()
    cos = float(torch.dot(a, b) / (a.norm() * b.norm())) if finite else float("nan")
    per = {}
    top = max(float(r.norm()) for r in ref.values())
    for n, r in ref.items():  # parameters whose exact gradient is 0 (a bias before a norm) are skipped
        if r.norm() > 1e-8 * top and torch.isfinite(grads[n]).all():
            g = grads[n]
            per[n] = float(torch.dot(g.flatten(), r.flatten()) / (g.norm() * r.norm() + 1e-300))
    worst = sorted(per, key=per.__getitem__)[:5]
    return {
        "cos": cos,
        "min_param_cos": min(per.values()) if per else float("nan"),
        "rel_err": float((a - b).norm() / b.norm()) if finite else float("nan"),
        "nonfinite": bad,
        "worst_params": {n: per[n] for n in worst},
    }


def run_case(name: str, args: argparse.Namespace) -> dict:
    """Every (variant, precision) of one model against its float64 reference."""
    base, x, y = case_inputs(name, args)
    state = copy.deepcopy(base.state_dict())
    t0 = time.time()
    ref_model = copy.deepcopy(base).double()
    ref_loss, ref = gradients(ref_model, x.double(), None if y is None else y.double(), bf16=False)
    rec: dict = {
        "input_shape": list(x.shape),
        "float64_loss": ref_loss,
        "float64_seconds": round(time.time() - t0, 2),
        "runs": {},
    }
    acc64 = accelerate(copy.deepcopy(base).double())
    _, grads = gradients(acc64, x.double(), None if y is None else y.double(), bf16=False)
    rec["runs"]["accelerated/float64"] = [compare(grads, ref)]  # the same function as the plain model?
    for variant in ("plain", "accelerated"):
        model = copy.deepcopy(base)
        if variant == "accelerated":
            accelerate(model)
        for prec in ("float32", "bf16"):
            rows = []
            for _ in range(args.repeats):
                model.load_state_dict(state)  # batch norm running statistics back to the start
                t1 = time.time()
                loss, grads = gradients(model, x, y, bf16=prec == "bf16")
                rows.append({"loss": loss, **compare(grads, ref), "seconds": round(time.time() - t1, 2)})
            rec["runs"][f"{variant}/{prec}"] = rows
            cos = [r["cos"] for r in rows]
            n_bad = sum(bool(r["nonfinite"]) for r in rows)
            print(
                f"{name:16s} {variant:11s} {prec:7s} cos {min(cos):.6f}..{max(cos):.6f} "
                f"rel-err {max(r['rel_err'] for r in rows):.3g} "
                f"min-param {min(r['min_param_cos'] for r in rows):.4f} non-finite {n_bad}/{len(rows)}",
                flush=True,
            )
    acc_cos = rec["runs"]["accelerated/float64"][0]["cos"]
    print(f"{name:16s} accelerated float64 cos {acc_cos:.12f}", flush=True)
    return rec


def batchnorm_layout_check(seed: int = 0) -> dict:
    """Float32 BatchNorm3d in training mode, contiguous vs channels-last, against float64.

    The input has mean 1 and SD 0.01 per channel (mean / SD = 100, as after a ReLU with a common
    offset); the relative error of the output and of the input, weight and bias gradients is reported.
    """
    torch.manual_seed(seed)
    x = torch.randn(2, 16, 8, 32, 64, dtype=torch.float64) * 0.01 + 1.0
    g = torch.randn(x.shape, dtype=torch.float64)

    def run(dtype: torch.dtype, channels_last: bool) -> list[torch.Tensor]:
        bn = nn.BatchNorm3d(16).train().to(dtype)
        xx = x.to(dtype).detach().clone()
        if channels_last:
            xx = xx.contiguous(memory_format=torch.channels_last_3d)
        xx.requires_grad_()
        y = bn(xx)
        (y * g.to(dtype)).sum().backward()
        return [t.detach().double() for t in (y, xx.grad, bn.weight.grad, bn.bias.grad)]

    ref = run(torch.float64, False)
    out = {}
    for layout, cl in (("contiguous", False), ("channels_last_3d", True)):
        got = run(torch.float32, cl)
        out[layout] = {
            k: float((a - b).norm() / b.norm())
            for k, a, b in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, ref, strict=True)
        }
    return out


def _clean(obj):
    """NaN and infinities as None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def summary(path: Path) -> None:
    """Print the markdown table of a results file: worst cosine of the sane runs, broken runs counted."""
    out = json.loads(path.read_text())
    print(f"CPU: {json.dumps(out['cpu'])}; settings: {json.dumps(out['settings'])}\n")
    cols = ("plain/float32", "plain/bf16", "accelerated/float32", "accelerated/bf16")
    print("| model (input) | " + " | ".join(cols) + " | accelerated/float64 |")
    print("|---|" + "---|" * (len(cols) + 1))
    for name, rec in out["cases"].items():
        cells = []
        for c in cols:
            rows = rec["runs"][c]
            ok = [r for r in rows if not r["nonfinite"] and r["rel_err"] is not None and r["rel_err"] < 10]
            bad = sum(bool(r["nonfinite"]) for r in rows)
            huge = len(rows) - len(ok) - bad
            cell = "—"
            if ok:
                cell = f"{min(r['cos'] for r in ok):.4f} (rel {max(r['rel_err'] for r in ok):.2g})"
            if bad or huge:
                cell += f", **non-finite {bad}/{len(rows)}, error > 10x the gradient {huge}/{len(rows)}**"
            cells.append(cell)
        acc = rec["runs"]["accelerated/float64"][0]["cos"]
        print(f"| {name} {tuple(rec['input_shape'])} | " + " | ".join(cells) + f" | {acc:.12f} |")


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all", help=f"comma-separated names, 'all', or {CONV_CASE!r}")
    ap.add_argument("--depth", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, nargs=2, default=(8, 32))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/bench3d2d-diag-cache")
    ap.add_argument("--out", default="benchmarks/results/precision-gradients.json")
    ap.add_argument("--summary", action="store_true", help="print the table of --out and exit")
    args = ap.parse_args(argv)
    if args.summary:
        summary(Path(args.out))
        return
    torch.set_num_threads(1)
    names = [*bench3d2d.models.list_models(), CONV_CASE] if args.models == "all" else args.models.split(",")
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.exists() else {}
    out["cpu"] = cpu_info()
    out["settings"] = {
        "depth": args.depth,
        "batch": args.batch,
        "crop": list(args.crop),
        "repeats": args.repeats,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out["cpu"]), flush=True)
    out["batchnorm_layout"] = batchnorm_layout_check(args.seed)
    print("float32 BatchNorm3d relative errors:", json.dumps(out["batchnorm_layout"]), flush=True)
    for name in names:
        out.setdefault("cases", {})[name] = run_case(name, args)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(out), indent=1, allow_nan=False) + "\n")
        tmp.replace(out_path)


if __name__ == "__main__":
    main()
