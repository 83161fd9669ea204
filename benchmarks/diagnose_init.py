"""Why IPN starts flat: signal and gradient statistics at initialisation, and short training runs.

Two subcommands (run with one thread, see ``docs/diagnostics.md``):

``stats``  For each model and initialisation, on two realistic training batches ``x1``, ``x2``
           (GA-S-1 quick data, prepared at the depth and cropped and augmented as training does)
           and on ``x0 = 0``, a forward hook on every convolution records its output's mean and SD
           and two measures of how much of that output the input causes:

           * ``pair_ratio`` = SD(y(x1) - y(x2)) / sqrt(Var y(x1) + Var y(x2)): about 1 when the layer's
             output changes with the input as much as two unrelated signals, 0 when it ignores it;
           * ``input_frac`` = SD(y(x1) - y(0)) / SD(y(x1)): the part of the output's spread that the
             input causes (the rest comes from biases and zero-padding borders).

           Then one backward pass of the segmentation loss (``dice_bce_loss``) on ``x1`` gives the mean
           |gradient| of every parameter. Models run in training mode (batch statistics).

``train``  Adam on the same batches for ``--steps`` steps, logging the mean loss, the Dice of
           (p > 0.5) on the training batches and the predicted-positive fraction every 10 steps, then
           the validation Dice on the first validation cases. ``--max-seconds`` stops a run early and
           saves its state; the same command continues it, so each invocation stays short.

Initialisations: ``default`` (the model's own, for IPN the official TensorFlow one: truncated normal
SD 0.02, biases 0.1), ``kaiming`` (He normal, fan-in, ReLU gain, zero biases, on every conv) and
``official-x64`` (the default, with the input multiplied by 64: IPN's official pipeline feeds raw
8-bit intensities, not z-scored ones; 64 is 255 times the SD 0.25 of the synthetic raw volumes);
for ``stats`` only, ``kaiming-bias0.1`` (He weights, official biases) and ``official-bias0`` (official
weights, zero biases) separate the two parts of the official initialisation.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import bench3d2d
from bench3d2d.data import load_dataset, make_split, prepare
from bench3d2d.engine._sources import eval_input, eval_target, make_batch
from bench3d2d.engine.losses import dice_bce_loss
from bench3d2d.engine.tasks import dice_score

INITS = ("default", "kaiming", "official-x64", "kaiming-bias0.1", "official-bias0")
CONVS = (nn.Conv2d, nn.Conv3d)


def input_scale(init: str) -> float:
    """The factor applied to the input for an initialisation name."""
    return 64.0 if init == "official-x64" else 1.0


def build(name: str, depth: int, init: str, seed: int) -> nn.Module:
    """A registered model with 1 -> 1 channels, seeded, re-initialised as ``init`` says."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    torch.manual_seed(seed)
    model = bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=depth)
    if hasattr(model, "input_scale"):  # IPN scales its input itself (x64); this script applies input_scale()
        model.input_scale = 1.0
    for m in model.modules():
        if not isinstance(m, CONVS) or init in ("default", "official-x64"):
            continue
        if init.startswith("kaiming"):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.1 if init == "kaiming-bias0.1" else 0.0)
    return model


def data(depth: int, cache: str, seed: int = 0, dataset: str = "synthetic-ga-s-1"):
    """The prepared quick data of ``dataset`` (default GA-S-1) at ``depth`` and its train / validation ids."""
    prep = prepare(load_dataset(dataset, size="quick"), depth, cache)
    patients = sorted({prep.patient(c) for c in prep.case_ids})
    split = make_split(patients, seed=seed)
    train = [c for c in prep.case_ids if prep.patient(c) in set(split.train)]
    val = [c for c in prep.case_ids if prep.patient(c) in set(split.val)]
    return prep, train, val


def batches(prep, train: list[str], n: int, batch: int, crop: tuple[int, int], seed: int):
    """``n`` augmented training batches (volumes, masks) drawn as the engine draws them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = [train[i] for i in rng.integers(0, len(train), batch)]
        out.append(make_batch(prep, ids, "mask", crop, True, rng))
    return out


def _capture(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs of every convolution (by module name) and the model's output for input ``x``."""
    outs: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, n=n: outs.__setitem__(n, out.detach().clone()))
        for n, m in model.named_modules()
        if isinstance(m, CONVS)
    ]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return outs, y.detach()


def _sd(t: torch.Tensor) -> float:
    return float(t.double().std())


def layer_stats(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> list[dict]:
    """Per-conv output mean/SD, ``pair_ratio`` and ``input_frac`` (module docstring), in forward order."""
    state = {k: v.clone() for k, v in model.state_dict().items()}  # batch norm updates running stats
    o1, y1 = _capture(model, x1)
    o2, y2 = _capture(model, x2)
    o0, y0 = _capture(model, torch.zeros_like(x1))
    model.load_state_dict(state)
    o1["<output>"], o2["<output>"], o0["<output>"] = y1, y2, y0
    rows = []
    for name, a in o1.items():
        b, z = o2[name], o0[name]
        sd = _sd(a)
        rows.append(
            {
                "layer": name,
                "shape": list(a.shape),
                "mean": float(a.double().mean()),
                "sd": sd,
                "pair_ratio": _sd(a - b) / max(math.sqrt(sd**2 + _sd(b) ** 2), 1e-30),
                "input_sd": _sd(a - z),
                "input_frac": _sd(a - z) / max(sd, 1e-30),
            }
        )
    return rows


def grad_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[dict]]:
    """Loss and per-parameter mean |grad| after one backward pass of the segmentation loss."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad(set_to_none=True)
    loss = dice_bce_loss(model(x), y)
    loss.backward()
    model.load_state_dict(state)
    rows = [
        {
            "param": n,
            "shape": list(p.shape),
            "mean_abs_grad": float(p.grad.abs().mean()),
            "mean_abs_weight": float(p.detach().abs().mean()),
        }
        for n, p in model.named_parameters()
        if p.grad is not None
    ]
    model.zero_grad(set_to_none=True)
    return float(loss), rows


def cmd_stats(args: argparse.Namespace) -> None:
    """The ``stats`` subcommand: one record per (model, init), written into ``--out``."""
    prep, train, _ = data(args.depth, args.cache, dataset=args.dataset)
    (x1, t1), (x2, _) = batches(prep, train, 2, args.batch, tuple(args.crop), args.seed)
    out = _load(args.out)
    for name in args.models.split(","):
        for init in args.inits.split(","):
            model = build(name, args.depth, init, args.seed).train()
            s = input_scale(init)
            t0 = time.time()
            layers = layer_stats(model, x1 * s, x2 * s)
            loss, grads = grad_stats(model, x1 * s, t1)
            first = next(g for g in grads if g["param"].endswith("weight") and len(g["shape"]) >= 4)
            last = [g for g in grads if g["param"].endswith("weight") and len(g["shape"]) >= 4][-1]
            rec = {
                "model": name,
                "init": init,
                "input_scale": s,
                "input_shape": list(x1.shape),
                "loss": loss,
                "first_conv_grad": first,
                "last_conv_grad": last,
                "grad_ratio_first_to_last": first["mean_abs_grad"] / max(last["mean_abs_grad"], 1e-30),
                "layers": layers,
                "grads": grads,
                "seconds": round(time.time() - t0, 1),
            }
            out.setdefault("stats", {})[f"{name}/{init}"] = rec
            lo = layers[-2] if len(layers) > 1 else layers[-1]
            print(
                f"{name:10s} {init:13s} loss {loss:.4f}  last conv sd {lo['sd']:.3g}"
                f" pair {lo['pair_ratio']:.3g} input_frac {lo['input_frac']:.3g}"
                f"  grad first/last {rec['grad_ratio_first_to_last']:.3g}"
                f"  ({rec['seconds']} s)",
                flush=True,
            )
            _save(args.out, out)


def _load(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def _round(obj):
    """Floats to 4 significant digits (the files stay small; the tables print 2-3)."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def _save(path: str, obj: dict) -> None:
    obj = _round(obj)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    tmp.replace(p)


def validate(model: nn.Module, prep, val: list[str], scale: float) -> float:
    """Mean Dice of (p > 0.5) on whole validation volumes (the evaluation grid)."""
    model.eval()
    scores = []
    with torch.no_grad():
        for cid in val:
            p = torch.sigmoid(model(eval_input(prep, cid) * scale))
            scores.append(dice_score(p.numpy() > 0.5, eval_target(prep, cid, "mask", True).numpy() > 0.5))
    model.train()
    return float(np.mean(scores))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata

    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def probabilities(model: nn.Module, prep, val: list[str], scale: float) -> dict:
    """On whole validation volumes: pixel AUC of the probabilities, their maximum, mean on lesion and
    background pixels, and the share of pixels above 0.5 (is the model ranking lesions below threshold?)."""
    model.eval()
    probs, labels = [], []
    with torch.no_grad():
        for cid in val:
            probs.append(torch.sigmoid(model(eval_input(prep, cid) * scale)).numpy().ravel())
            labels.append(eval_target(prep, cid, "mask", True).numpy().ravel() > 0.5)
    model.train()
    p, y = np.concatenate(probs), np.concatenate(labels)
    return {
        "val_auc": auc(p, y),
        "val_max_prob": float(p.max()),
        "val_mean_prob_lesion": float(p[y].mean()),
        "val_mean_prob_background": float(p[~y].mean()),
        "val_pred_pos_frac": float((p > 0.5).mean()),
        "val_target_pos_frac": float(y.mean()),
    }


def cmd_train(args: argparse.Namespace) -> None:
    """The ``train`` subcommand (resumable through ``--state``); the finished run goes into ``--out``."""
    key = f"{args.model}/{args.init}/adam{args.lr:g}/b{args.batch}"
    if args.dataset != "synthetic-ga-s-1":
        key = f"{args.dataset}/{key}"
    prep, train, val = data(args.depth, args.cache, dataset=args.dataset)
    model = build(args.model, args.depth, args.init, args.seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state_path = Path(args.state)
    log: list[dict] = []
    step = 0
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        log, step = st["log"], st["step"]
    scale = input_scale(args.init)
    t0, acc = time.time(), {"loss": [], "dice": [], "pos": []}
    while step < args.steps and time.time() - t0 < args.max_seconds:
        rng = np.random.default_rng([args.seed, step])  # batch of step k is fixed, so resuming is exact
        ids = [train[i] for i in rng.integers(0, len(train), args.batch)]
        x, y = make_batch(prep, ids, "mask", tuple(args.crop), True, rng)
        logits = model(x * scale)
        loss = dice_bce_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        pred = logits.detach() > 0
        acc["loss"].append(float(loss))
        acc["dice"].append(dice_score(pred.numpy(), y.numpy() > 0.5))
        acc["pos"].append(float(pred.float().mean()))
        if step % 10 == 0:
            log.append({"step": step, **{k: float(np.mean(v)) for k, v in acc.items()}})
            acc = {k: [] for k in acc}
            print(
                f"{key} step {step}: loss {log[-1]['loss']:.4f} dice {log[-1]['dice']:.3f} "
                f"pos {log[-1]['pos']:.3f}",
                flush=True,
            )
    if step < args.steps:
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "log": log, "step": step}, state_path
        )
        print(f"{key}: paused at step {step}; run the same command again to continue", flush=True)
        return
    rec = {
        "model": args.model,
        "init": args.init,
        "input_scale": scale,
        "optimizer": "adam",
        "lr": args.lr,
        "batch": args.batch,
        "crop": list(args.crop),
        "depth": args.depth,
        "steps": step,
        "log": log,
        "val_dice": validate(model, prep, val[: args.val_cases], scale),
        "val_cases": len(val[: args.val_cases]),
        **probabilities(model, prep, val[: args.val_cases], scale),
    }
    out = _load(args.out)
    out.setdefault("train", {})[key] = rec
    _save(args.out, out)
    state_path.unlink(missing_ok=True)
    print(f"{key}: done, validation Dice {rec['val_dice']:.3f}, pixel AUC {rec['val_auc']:.3f}", flush=True)


def cmd_summary(args: argparse.Namespace) -> None:
    """The ``summary`` subcommand: markdown tables from the ``stats`` and ``train`` JSON files."""
    stats = _load(args.stats).get("stats", {})
    ipn = [k for k in stats if k.startswith("ipn/")]
    if ipn:
        print("| layer | " + " | ".join(f"{k}: SD / pair / input_frac" for k in ipn) + " |")
        print("|---|" + "---|" * len(ipn))
        for i, row in enumerate(stats[ipn[0]]["layers"]):
            cells = [
                f"{stats[k]['layers'][i]['sd']:.3g} / {stats[k]['layers'][i]['pair_ratio']:.2g} / "
                f"{stats[k]['layers'][i]['input_frac']:.2g}"
                for k in ipn
            ]
            print(f"| {row['layer']} | " + " | ".join(cells) + " |")
    print(
        "\n| model / init | loss | output SD | pair | input_frac | first conv mean abs grad | "
        "last conv | first / last |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, r in stats.items():
        o = r["layers"][-1]
        print(
            f"| {k} | {r['loss']:.3f} | {o['sd']:.3g} | {o['pair_ratio']:.2g} | {o['input_frac']:.2g} | "
            f"{r['first_conv_grad']['mean_abs_grad']:.2g} | {r['last_conv_grad']['mean_abs_grad']:.2g} | "
            f"{r['grad_ratio_first_to_last']:.2g} |"
        )
    train = _load(args.train).get("train", {})
    if train:
        steps = [e["step"] for e in next(iter(train.values()))["log"]]
        print("\n| step | " + " | ".join(train) + " |")
        print("|---|" + "---|" * len(train))
        for i, st in enumerate(steps):
            cells = [
                f"{r['log'][i]['loss']:.3f} ({r['log'][i]['dice']:.2f})" if i < len(r["log"]) else ""
                for r in train.values()
            ]
            print(f"| {st} | " + " | ".join(cells) + " |")
        print("| val Dice | " + " | ".join(f"{r['val_dice']:.3f}" for r in train.values()) + " |")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``stats`` or ``train`` (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("stats", "train"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="synthetic-ga-s-1")
        p.add_argument("--depth", type=int, default=64)
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--crop", type=int, nargs=2, default=(8, 32))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--cache", default="/tmp/bench3d2d-diag-cache")
        p.add_argument("--out", default=f"benchmarks/results/diagnose-init-{name}.json")
    st = sub.choices["stats"]
    st.add_argument("--models", default="ipn,ipnv2,lachinov,fpbnet")
    st.add_argument("--inits", default="default,kaiming")
    tr = sub.choices["train"]
    tr.add_argument("--model", default="ipn")
    tr.add_argument("--init", default="default", choices=INITS)
    tr.add_argument("--lr", type=float, default=1e-4)
    tr.add_argument("--steps", type=int, default=150)
    tr.add_argument("--val-cases", type=int, default=6)
    tr.add_argument("--max-seconds", type=float, default=160)
    tr.add_argument("--state", default="")
    sm = sub.add_parser("summary")
    sm.add_argument("--stats", default="benchmarks/results/diagnose-init-stats.json")
    sm.add_argument("--train", default="benchmarks/results/diagnose-init-train.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "summary":
        cmd_summary(args)
    elif args.cmd == "stats":
        cmd_stats(args)
    else:
        args.state = args.state or f"/tmp/diag-train-{args.model}-{args.init}-{args.lr:g}.pt"
        cmd_train(args)


if __name__ == "__main__":
    main()
