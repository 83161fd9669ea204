"""``bench3d2d data``: list, describe, preview, prepare and split datasets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` sub-command and its actions."""
    p = subparsers.add_parser("data", help="datasets: list, info, check, preview, prepare, split")
    actions = p.add_subparsers(dest="data_action", metavar="ACTION")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("name", help="registered dataset name, manifest (.csv/.json), .vol file or folder")
        sp.add_argument("--size", default="quick", help="size preset of synthetic data: quick or paper")
        sp.add_argument("--seed", type=int, default=0, help="cohort seed of synthetic data")

    sp = actions.add_parser("list", help="registered datasets")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=run_list)

    sp = actions.add_parser("info", help="counts, sizes, spacing, lesion area statistics")
    common(sp)
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=run_info)

    sp = actions.add_parser(
        "check",
        help="read datasets as a sweep will and report every problem before any training",
        description="Check datasets (registered names, manifests, dataset folders; a folder that is not "
        "a dataset is searched for .csv/.json manifests) and print every problem, one line each: columns, "
        "rows, files, shapes, spacing, mask values, patients for the split, modalities a pre-training "
        "needs. Exit 1 if any problem was found.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="dataset names, manifests or folders")
    sp.add_argument("--size", default="quick", help="size preset of synthetic data: quick or paper")
    sp.add_argument("--seed", type=int, default=0, help="cohort seed of synthetic data")
    sp.add_argument(
        "--pretrain",
        default="none",
        metavar="VARIANT,...",
        help="pre-training variants planned on these datasets (slo, faf): every scan needs that image",
    )
    sp.add_argument("--headers-only", action="store_true", help="do not read the images (faster)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=run_check)

    sp = actions.add_parser("preview", help="figure: B-scan with mask, en-face mask, SLO, FAF")
    common(sp)
    sp.add_argument("--out", required=True, help="output PNG file")
    sp.add_argument("--scan", default=None, help="scan id (default: an annotated scan with a large lesion)")
    sp.add_argument("--dpi", type=int, default=110, help="figure resolution in dots per inch")
    sp.set_defaults(func=run_preview)

    sp = actions.add_parser(
        "prepare",
        help="preprocess into the memory-mapped cache (protocol §2), exactly as `run` will use it",
        description="Fill the cache a sweep reads: by default the depth and data size of the profile "
        "`run` uses (standard) and the cache of its results folder (RESULTS/cache, or "
        "$BENCH3D2D_CACHE_DIR), so that `run` finds every scan prepared.",
    )
    sp.add_argument("name", help="registered dataset name, manifest (.csv/.json), .vol file or folder")
    sp.add_argument("--profile", default="standard", help="training profile whose depth and data size to use")
    sp.add_argument("--size", default=None, help="size preset of synthetic data (default: the profile's)")
    sp.add_argument("--seed", type=int, default=0, help="cohort seed of synthetic data")
    sp.add_argument("--depth", type=int, default=None, help="depth after resizing (default: the profile's)")
    sp.add_argument("--out", default="results", help="results folder whose cache to fill (as `run --out`)")
    sp.add_argument(
        "--cache-dir", default=None, help="cache folder (default: $BENCH3D2D_CACHE_DIR, else RESULTS/cache)"
    )
    sp.add_argument(
        "--no-flatten", action="store_true", help="do not flatten at Bruch's membrane (`run` always does)"
    )
    sp.set_defaults(func=run_prepare)

    sp = actions.add_parser("split", help="patient-wise 60/10/30 split, saved as JSON")
    common(sp)
    sp.add_argument("--out", required=True, help="output JSON file")
    sp.add_argument("--split-seed", type=int, default=0, help="split seed")
    sp.set_defaults(func=run_split)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    """Print the registered datasets."""
    from bench3d2d.data import dataset_info, list_datasets

    rows = [
        {"name": n, "task": dataset_info(n).task, "description": dataset_info(n).description}
        for n in list_datasets()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['task']:<4} {r['description']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print counts, shapes, spacing and lesion statistics."""
    from bench3d2d.data import load_dataset
    from bench3d2d.data.preview import dataset_stats

    stats = dataset_stats(load_dataset(args.name, size=args.size, seed=args.seed))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    area = stats["lesion_area_mm2"]
    print(f"dataset        {stats['name']}")
    print(f"patients       {stats['patients']}  (eyes {stats['eyes']})")
    print(
        f"scans          {stats['scans']}  (annotated {stats['annotated_scans']}, "
        f"second rater {stats['scans_with_extra_masks']})"
    )
    n_slo, n_faf, n_bm = stats["with_slo"], stats["with_faf"], stats["with_bm_surface"]
    print(f"modalities     SLO {n_slo}, FAF {n_faf}, BM surface {n_bm}")
    print(f"shapes (H,W,D) {', '.join('x'.join(map(str, s)) for s in stats['shapes'])}")
    print(f"spacing (mm)   {', '.join(' x '.join(f'{v:.4g}' for v in s) for s in stats['spacing_mm'])}")
    if area["mean"] is not None:
        print(
            f"lesion area    mean {area['mean']:.2f} mm², median {area['median']:.2f}, "
            f"range {area['min']:.2f}-{area['max']:.2f}, empty masks {area['empty_masks']}"
        )
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print every problem of the given datasets, one line each; exit 1 if there is any."""
    from bench3d2d.data.check import CheckOptions, check_dataset, find_datasets

    variants = [v.strip().lower() for v in args.pretrain.replace(",", " ").split()]
    bad = [v for v in variants if v not in ("none", "slo", "faf")]
    if bad:
        raise ValueError(f"--pretrain: unknown variant(s) {', '.join(bad)}; choose among none, slo, faf")
    options = CheckOptions(
        args.size, args.seed, tuple(v for v in variants if v != "none"), not args.headers_only
    )
    reports = [check_dataset(t, options) for path in args.paths for t in find_datasets(path)]
    if args.json:
        print(json.dumps([vars(r) for r in reports], indent=2))
        return 1 if any(r.problems for r in reports) else 0
    for r in reports:
        for line in r.problems:
            print(f"error: {line}")
        for line in r.notes:
            print(f"note: {line}")
        counts = ", ".join(f"{k} {v}" for k, v in r.counts.items())
        verdict = "ok" if r.ok else f"{len(r.problems)} problem(s)"
        print(f"{r.target}: {verdict}{f' ({counts})' if counts else ''}")
    return 1 if any(r.problems for r in reports) else 0


def run_preview(args: argparse.Namespace) -> int:
    """Write the preview figure."""
    from bench3d2d.data import load_dataset
    from bench3d2d.data.preview import pick_scan, preview_figure

    ds = load_dataset(args.name, size=args.size, seed=args.seed)
    scan = pick_scan(ds, args.scan)
    out = preview_figure(scan, args.out, title=f"{ds.name}: {scan.scan_id}", dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare the dataset into the cache `run` reads (same depth, data size and cache folder)."""
    from bench3d2d.data import load_dataset, prepare
    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.harness.sweep import ResultsStore

    profile = get_profile(args.profile)
    cache_dir = Path(args.cache_dir) if args.cache_dir else ResultsStore(args.out).cache_dir
    depth = args.depth or profile.depth
    t0 = time.perf_counter()
    ds = load_dataset(args.name, size=args.size or profile.data_size, seed=args.seed)
    prepared = prepare(ds, depth=depth, cache_dir=cache_dir, flatten=not args.no_flatten)
    dt = time.perf_counter() - t0
    print(
        f"prepared {len(prepared)} scans of {prepared.name} at depth {depth} in {dt:.1f} s -> {prepared.root}"
    )
    print(f"cache key {prepared.key}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Write the patient-wise split."""
    from bench3d2d.data import load_dataset, make_split
    from bench3d2d.data.splits import require_split_patients

    ds = load_dataset(args.name, size=args.size, seed=args.seed)
    require_split_patients(len(ds.patient_ids()), args.name)
    split = make_split(ds.patient_ids(), seed=args.split_seed, dataset=ds.name)
    split.to_json(args.out)
    print(
        f"wrote {args.out}: train {len(split.train)}, val {len(split.val)}, test {len(split.test)} patients"
    )
    return 0
