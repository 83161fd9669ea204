"""Where a training step's time goes: ``python benchmarks/profile_step.py fpbnet 8,1,8,64,128 [--fast]``.

Default: process CPU seconds per ATen operator, measured with a ``TorchDispatchMode`` around
every operator (forward, backward and optimiser; all threads of the process are counted, so
the numbers are robust to being descheduled on a shared machine, unlike wall-clock profiles).
``--torch-profiler``: the wall-clock ``torch.profiler`` table instead. ``--retain`` calls
``retain_freed_memory()`` first. The best of ``--repeats`` steps is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import bench3d2d
from bench3d2d.engine.acceleration import accelerate, retain_freed_memory


class CpuTimePerOp(TorchDispatchMode):
    """Accumulates process CPU seconds and calls per ATen operator."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.process_time()
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        self.seconds[name] += time.process_time() - start
        self.calls[name] += 1
        return out


def main(argv: list[str] | None = None) -> int:
    """Profile one training step of a registered model and print the top operators."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("shape", help="B,C,H,W,D, e.g. 8,1,8,64,128")
    p.add_argument("--fast", action="store_true", help="accelerate(model) first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--retain", action="store_true", help="retain_freed_memory() first")
    p.add_argument("--torch-profiler", action="store_true", help="wall-clock torch.profiler table")
    args = p.parse_args(argv)
    if args.retain:
        retain_freed_memory()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    torch.manual_seed(0)
    model = bench3d2d.create_model(args.model, in_channels=shape[1], out_channels=1, depth=shape[-1])
    if args.fast:
        accelerate(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(shape)
    y = (torch.rand(shape[0], 1, shape[2], shape[3]) < 0.3).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()

    step()
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
        return 0
    best = None
    for _ in range(args.repeats):
        with CpuTimePerOp() as timer:
            start = time.process_time()
            step()
            total = time.process_time() - start
        if best is None or total < best[0]:
            best = (total, timer)
    total, timer = best
    print(
        f"{args.model} {shape} {'accelerated' if args.fast else 'plain'}, {args.threads} thread(s): "
        f"{total:.3f} CPU s per step (best of {args.repeats}); operators:"
    )
    for name, sec in timer.seconds.most_common(args.top):
        print(f"  {name:42s} {sec:7.3f} s  {100 * sec / total:5.1f} %  ({timer.calls[name]} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
