"""Why IPN and enface_unet stay at Dice 0 on the RPD benchmark: the data, and the models at initialisation.

Three subcommands (run with one thread, see ``docs/diagnostics.md``, "RPD: IPN and enface_unet"):

``data``  Per dataset (quick size, prepared at ``--depth`` as training prepares it): scans, scans
          without lesion, the fraction of positive pixels per scan, the connected lesion components
          per scan and their size in pixels, and how separable a lesion pixel is from a background
          pixel in the input: the standardised mean difference d = (mean_pos - mean_neg) / SD of
          (a) every single voxel row of the flattened volume (the best row is reported with its
          offset from Bruch's membrane), and (b) each of enface_unet's slab projections (mean, max,
          SD over ``--slabs`` depth slabs), all pixels of the training scans pooled.

``labels`` With the generator's own fields (first visit of the right eye of the first ``--eyes``
          patients): the share of RPD deposits that the mask labels (a pixel is labelled when a
          deposit covers half of it), the footprint's and the mask's share of the scan, and the mean
          deposit height at labelled pixels.

``init``  Per model on two augmented training batches of each dataset (drawn as the engine draws
          them): the loss, the logits' mean and SD, how much of the logits the input causes
          (``pair`` and ``input_frac`` as in ``diagnose_init.py``), the share of pixels predicted
          positive (logit > 0), and the mean |gradient| of the first and the last conv weight.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench3d2d.baselines.enface_unet import slab_projections
from diagnose_init import _load, _save, grad_stats, layer_stats

import bench3d2d
from bench3d2d.data import load_dataset, make_split, prepare
from bench3d2d.data.preprocess import area_resample
from bench3d2d.data.synthetic import FAMILY_CODE, PRESETS, Difficulty, _eye_fields
from bench3d2d.engine._sources import make_batch

DATASETS = ("synthetic-rpd", "synthetic-ga-s-1")


def prepared(name: str, depth: int, cache: str, seed: int = 0):
    """The prepared quick dataset at ``depth`` and its training case ids (the engine's split)."""
    prep = prepare(load_dataset(name, size="quick"), depth, cache)
    split = make_split(sorted({prep.patient(c) for c in prep.case_ids}), seed=seed, dataset=name)
    train = set(split.train)
    return prep, [c for c in prep.case_ids if prep.patient(c) in train]


def lesion_stats(masks: list[np.ndarray]) -> dict:
    """Positive fraction, scans without lesion, components per scan and component sizes (pixels)."""
    frac = np.array([m.mean() for m in masks])
    sizes, counts = [], []
    for m in masks:
        lab, n = ndimage.label(m > 0.5)
        counts.append(n)
        sizes.extend(np.bincount(lab.ravel())[1:].tolist())
    sizes_a = np.array(sizes, dtype=float)
    return {
        "scans": len(masks),
        "shape": list(masks[0].shape),
        "empty_scans": int(sum(m.sum() == 0 for m in masks)),
        "pos_frac_mean": float(frac.mean()),
        "pos_frac_min": float(frac.min()),
        "pos_frac_max": float(frac.max()),
        "components_per_scan": float(np.mean(counts)),
        "component_px_p10_p50_p90": np.percentile(sizes_a, [10, 50, 90]).tolist() if len(sizes) else [],
        "single_pixel_components": float(np.mean(sizes_a == 1)) if len(sizes) else 0.0,
    }


def separability(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Standardised mean difference (pos - neg) / pooled SD of every feature column; (N, F) -> (F,)."""
    pos, neg = features[labels], features[~labels]
    sd = np.sqrt(0.5 * (pos.var(axis=0) + neg.var(axis=0)))
    return (pos.mean(axis=0) - neg.mean(axis=0)) / np.maximum(sd, 1e-12)


def signal_stats(prep, cases: list[str], slabs: int) -> dict:
    """d of every depth row (offset from BM) and of every slab projection, training pixels pooled."""
    rows, projs, labels = [], [], []
    bm = round(prep.meta(cases[0]).get("bm_row", 0))
    for c in cases:
        v = prep.volume(c)
        labels.append(prep.target(c, "mask").reshape(-1) > 0.5)
        rows.append(v.reshape(-1, v.shape[-1]))
        p = slab_projections(torch.from_numpy(np.ascontiguousarray(v))[None, None], slabs)[0]
        projs.append(p.permute(1, 2, 0).reshape(-1, p.shape[0]).numpy())
    y = np.concatenate(labels)
    d_rows = separability(np.concatenate(rows), y)
    d_proj = separability(np.concatenate(projs), y)
    best = int(np.argmax(np.abs(d_rows)))
    names = [f"{s}:slab{k}" for s in ("mean", "max", "sd") for k in range(slabs)]
    return {
        "bm_row": bm,
        "best_row": best,
        "best_row_minus_bm": best - bm,
        "best_row_d": float(d_rows[best]),
        "rows_abs_d_over_0.3": int(np.sum(np.abs(d_rows) > 0.3)),
        "projections_d": dict(zip(names, map(float, d_proj))),
        "best_projection": names[int(np.argmax(np.abs(d_proj)))],
        "best_projection_d": float(d_proj[int(np.argmax(np.abs(d_proj)))]),
    }


def cmd_data(args: argparse.Namespace) -> None:
    """The ``data`` subcommand: lesion and signal statistics per dataset into ``--out``."""
    out = _load(args.out)
    for name in args.datasets.split(","):
        prep, train = prepared(name, args.depth, args.cache)
        masks = [prep.target(c, "mask") for c in prep.case_ids]
        rec = {"lesions": lesion_stats(masks), "spacing_mm": list(prep.spacing(prep.case_ids[0]))}
        rec["signal"] = signal_stats(prep, train, args.slabs)
        out.setdefault("data", {})[name] = rec
        les, sig = rec["lesions"], rec["signal"]
        print(
            f"{name}: {les['scans']} scans {les['shape']}, {les['empty_scans']} without lesion, positive "
            f"{les['pos_frac_mean']:.3f} ({les['pos_frac_min']:.3f}-{les['pos_frac_max']:.3f}), "
            f"{les['components_per_scan']:.1f} components/scan of {les['component_px_p10_p50_p90']} px; "
            f"best voxel row d {sig['best_row_d']:.2f} at BM{sig['best_row_minus_bm']:+d}, best "
            f"projection {sig['best_projection']} d {sig['best_projection_d']:.2f}",
            flush=True,
        )
        _save(args.out, out)


def label_check(eyes: int, seed: int = 0) -> dict:
    """Do the quick RPD masks label the generator's deposits? Per right eye of the first ``eyes`` patients
    (first visit): deposits (fine-grid footprint components) that reach half a mask pixel, the
    footprint's and the mask's share of the scan, and the mean deposit height at labelled pixels."""
    preset, diff = PRESETS["rpd"]["quick"], Difficulty()
    labelled, total, foot_frac, mask_frac, heights = 0, 0, [], [], []
    for patient in range(eyes):
        rng = np.random.default_rng([seed, FAMILY_CODE["rpd"], patient, 0])
        height, foot = _eye_fields(rng, preset, "OD", 1, diff).lesions[0]
        mask = area_resample(foot, preset.shape[:2]) >= 0.5
        lab, n = ndimage.label(foot > 0)
        for k in range(1, n + 1):
            labelled += bool(area_resample((lab == k).astype(np.float32), preset.shape[:2]).max() >= 0.5)
        total += n
        foot_frac.append(float(foot.mean()))
        mask_frac.append(float(mask.mean()))
        heights.append(float(area_resample(height, preset.shape[:2])[mask].mean()))
    return {
        "eyes": eyes,
        "deposits": total,
        "deposits_reaching_half_a_pixel": labelled / max(total, 1),
        "footprint_frac": foot_frac,
        "mask_frac": mask_frac,
        "mean_height_mm_at_mask": float(np.mean(heights)),
        "depth_voxel_mm": preset.spacing_mm[2],
    }


def cmd_labels(args: argparse.Namespace) -> None:
    """The ``labels`` subcommand: :func:`label_check` into ``--out`` (key ``labels``)."""
    out = _load(args.out)
    out["labels"] = rec = label_check(args.eyes, args.seed)
    print(
        f"{rec['deposits']} deposits in {rec['eyes']} eyes, {rec['deposits_reaching_half_a_pixel']:.1%} "
        f"labelled; mean height at mask pixels {rec['mean_height_mm_at_mask']:.4f} mm",
        flush=True,
    )
    _save(args.out, out)


def cmd_init(args: argparse.Namespace) -> None:
    """The ``init`` subcommand: logits and gradients at initialisation per (model, dataset)."""
    out = _load(args.out)
    for name in args.datasets.split(","):
        prep, train = prepared(name, args.depth, args.cache)
        rng = np.random.default_rng(args.seed)
        (x1, t1), (x2, _) = (
            make_batch(prep, [train[i] for i in rng.integers(0, len(train), args.batch)], "mask",
                       tuple(args.crop), True, rng)
            for _ in range(2)
        )  # fmt: skip
        for model_name in args.models.split(","):
            torch.manual_seed(args.seed)
            model = bench3d2d.create_model(model_name, in_channels=1, out_channels=1, depth=args.depth)
            model.train()
            logits = layer_stats(model, x1, x2)[-1]
            with torch.no_grad():
                pos = float((model(x1) > 0).float().mean())
            loss, grads = grad_stats(model, x1, t1)
            convs = [g for g in grads if g["param"].endswith("weight") and len(g["shape"]) >= 4]
            rec = {
                "loss": loss,
                "target_pos_frac": float(t1.mean()),
                "logits": logits,
                "pred_pos_frac": pos,
                "first_conv_grad": convs[0]["mean_abs_grad"],
                "last_conv_grad": convs[-1]["mean_abs_grad"],
            }
            out.setdefault("init", {})[f"{model_name}/{name}"] = rec
            print(
                f"{model_name:12s} {name:17s} loss {loss:.3f} logits mean {logits['mean']:.3g} "
                f"sd {logits['sd']:.3g} pair {logits['pair_ratio']:.2g} "
                f"input_frac {logits['input_frac']:.2g} "
                f"predicted positive {pos:.3f} (target {rec['target_pos_frac']:.3f}) grad first "
                f"{rec['first_conv_grad']:.2g} last {rec['last_conv_grad']:.2g}",
                flush=True,
            )
            _save(args.out, out)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``data`` or ``init`` (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("data", "init"):
        p = sub.add_parser(name)
        p.add_argument("--datasets", default=",".join(DATASETS))
        p.add_argument("--depth", type=int, default=96)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--cache", default="/tmp/bench3d2d-diag-cache")
        p.add_argument("--out", default=f"benchmarks/results/diagnose-rpd-{name}.json")
    sub.choices["data"].add_argument("--slabs", type=int, default=4)
    lab = sub.add_parser("labels")
    lab.add_argument("--eyes", type=int, default=8)
    lab.add_argument("--seed", type=int, default=0)
    lab.add_argument("--out", default="benchmarks/results/diagnose-rpd-data.json")
    ini = sub.choices["init"]
    ini.add_argument("--models", default="ipn,enface_unet")
    ini.add_argument("--batch", type=int, default=4)
    ini.add_argument("--crop", type=int, nargs=2, default=(8, 32))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    {"data": cmd_data, "labels": cmd_labels, "init": cmd_init}[args.cmd](args)


if __name__ == "__main__":
    main()
