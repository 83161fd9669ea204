"""Each Conv3d of a model alone, plain vs FastConv3d: ``profile_layers.py fpbnet 8,1,8,64,128``.

Records every Conv3d call of one forward pass (kernel, stride, padding, channels, input shape),
then times forward + backward (input gradient where the layer's input needs one, and the
weight gradient) of each configuration alone, the plain ``Conv3d`` on a contiguous input and
``FastConv3d`` on a channels-last input, interleaved; best process-CPU time of ``--repeats``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import bench3d2d
from bench3d2d.engine.acceleration import accelerate, conv_path

CL3D = torch.channels_last_3d


def _best_cpu(fns: dict, repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.process_time()
            fn()
            best[k] = min(best[k], time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    """Print one row per Conv3d configuration, slowest (plain) first, and the totals."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("shape", help="B,C,H,W,D")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    model = bench3d2d.create_model(args.model, in_channels=shape[1], out_channels=1, depth=shape[-1])
    seen: OrderedDict[tuple, int] = OrderedDict()

    def record(mod, inputs, _out):
        key = (
            mod.kernel_size,
            mod.stride,
            mod.padding,
            mod.in_channels,
            mod.out_channels,
            mod.groups,
            tuple(inputs[0].shape),
            inputs[0].requires_grad,
        )
        seen[key] = seen.get(key, 0) + 1

    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            m.register_forward_hook(record)
    model(torch.randn(shape))
    rows, totals = [], {"plain": 0.0, "fast": 0.0}
    for (k, s, pad, cin, cout, groups, ishape, needs_grad), count in seen.items():
        plain = nn.Conv3d(cin, cout, k, s, pad, groups=groups, bias=False)
        fast = accelerate(copy.deepcopy(plain), channels_last=True)
        x = torch.randn(ishape)
        with FlopCounterMode(display=False) as flops:
            y = plain(x.requires_grad_(needs_grad))
            y.backward(torch.ones_like(y))
        gflop = flops.get_total_flops() / 1e9

        def step(mod, inp, needs_grad=needs_grad):
            inp = inp.detach().requires_grad_(needs_grad)
            grad = torch.ones_like(mod(inp))

            def run():
                mod(inp).backward(grad)
                inp.grad = None
                mod.weight.grad = None

            return run

        best = _best_cpu(
            {"plain": step(plain, x), "fast": step(fast, x.contiguous(memory_format=CL3D))}, args.repeats
        )
        for key in totals:
            totals[key] += best[key] * count
        rows.append(
            (
                best["plain"] * count,
                f"{k!s:10} s{s!s:10} {cin:4d}->{cout:<4d} {ishape!s:24} x{count} "
                f"{conv_path(plain, ishape):9} "
                f"{gflop * count:6.2f} GFLOP  plain {best['plain'] * count * 1e3:7.1f} ms "
                f"({gflop / best['plain']:4.0f} GFLOP/s)  fast {best['fast'] * count * 1e3:7.1f} ms "
                f"({gflop / best['fast']:4.0f} GFLOP/s)",
            )
        )
    for _, row in sorted(rows, reverse=True):
        print(row)
    print(
        f"total: plain {totals['plain']:.3f} CPU s, fast {totals['fast']:.3f} CPU s, "
        f"ratio {totals['plain'] / totals['fast']:.2f}x ({args.threads} thread(s))"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
