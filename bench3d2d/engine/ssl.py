"""Self-supervised pre-training by inter-modal reconstruction (``docs/protocol.md`` §8), for any model.

:func:`pretrain` trains the same architecture (K = 1) to reconstruct SLO or inverted FAF from the
OCT volume with −mean SSIM, selects the best-SSIM checkpoint and caches its weights under a key
of (model, source, modality, profile, seed, excluded patients); every fraction and target
dataset that needs them reuses the file. Fine-tuning loads all of them (head included) strictly
through ``engine.fit(init_weights=...)``; nothing is frozen and the optimiser starts fresh.

Which patients to leave out of pre-training (docs/protocol.md §1.2: the GA-M-S test patients) is data,
not code: the ``exclude`` dataset names, by default the source's registry metadata
``pretrain_exclude``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bench3d2d._defaults import DEFAULT_PROFILE
from bench3d2d._io import atomic_write_json, safe_name
from bench3d2d._lock import ClaimLock
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine._fit import FitResult, build_model, fit
from bench3d2d.engine._sources import CaseSource
from bench3d2d.engine.config import Compute, FitOptions, PretrainTarget
from bench3d2d.engine.profiles import Profile, get_profile
from bench3d2d.engine.recipes import apply_recipe, resolve_recipe
from bench3d2d.engine.tasks import reconstruction

log = logging.getLogger("bench3d2d.engine.ssl")

WEIGHTS = "weights.pt"
INFO = "info.json"


@dataclass(frozen=True)
class PretrainResult:
    """Pre-trained weights and how they were obtained."""

    weights: Path
    key: str
    score: float
    cached: bool
    seconds: float
    info: Mapping[str, Any]


def pretrain_on(
    model: str,
    train: CaseSource,
    val: CaseSource,
    modality: str,
    options: FitOptions,
    *,
    out_dir: Path,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Path, FitResult]:
    """Reconstruction training of ``model`` on given cases; writes and returns ``out_dir/weights.pt``.

    The weights are those of the best validation SSIM (§8.2). Resumes (and heals) like ``fit``.
    """
    profile = get_profile(options.profile)
    task = reconstruction(modality)
    torch.manual_seed(int(options.seed))
    net = build_model(model, profile.depth, 1, task.out_channels, **dict(model_kwargs or {}))
    options = replace(options, profile=profile, description=f"pretrain {model} {modality}")
    result = fit(net, task, train, val, options, out_dir=out_dir)
    best = result.best  # fit leaves the best checkpoint's weights in ``net``
    weights = Path(out_dir) / WEIGHTS
    ckpt_io.save_weights(
        net,
        weights,
        task="reconstruction",
        target=modality,
        score=best.score,
        step=best.step,
        score_name="ssim",
        selected="best validation SSIM",
    )
    return weights, result


def pretrain_key(what: PretrainTarget, profile: Profile, excluded: Sequence[str]) -> str:
    """Readable, unique cache key: ``<model>-<modality>-<source>-<profile>-s<seed>-<hash>``."""
    payload = {
        "model": what.model,
        "source": what.source,
        "modality": what.modality,
        "profile": profile.to_dict(),
        "seed": int(what.seed),
        "data_seed": int(what.data_seed),
        "split_seed": int(what.split_seed),
        "excluded": sorted(excluded),
        "model_kwargs": dict(what.model_kwargs or {}),
        "data_options": dict(what.data_options or {}),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    source = what.source
    safe_source = safe_name(Path(source).name if "/" in source else source)
    return f"{what.model}-{what.modality}-{safe_source}-{profile.name}-s{what.seed}-{digest}"


def default_source(train_dataset: str) -> str:
    """The pre-training source of a dataset: its registry metadata ``pretrain_source``, else the
    registered dataset tagged ``pretraining`` (the one with the same task when there are several)."""
    from bench3d2d.data import dataset_info, list_datasets

    try:
        info = dataset_info(train_dataset)
    except LookupError:
        info = None
    if info is not None and info.extra.get("pretrain_source"):
        return str(info.extra["pretrain_source"])
    tagged = [n for n in list_datasets() if "pretraining" in dataset_info(n).tags]
    if len(tagged) > 1 and info is not None:
        same_task = [n for n in tagged if dataset_info(n).task == info.task]
        tagged = same_task if len(same_task) == 1 else tagged
    if len(tagged) != 1:
        raise ValueError(
            f"cannot choose a pre-training source for {train_dataset!r} (datasets tagged 'pretraining': "
            f"{tagged or 'none'}); pass one explicitly (--pretrain-source)"
        )
    return tagged[0]


def default_exclusions(source: str, size: str = "quick", seed: int = 0) -> list[str]:
    """Datasets whose patients stay out of pre-training on ``source`` (docs/protocol.md §1.2).

    The source's registry metadata ``pretrain_exclude`` when given; otherwise every registered
    dataset tagged ``test`` that is a view of the same cohort (same namespace).
    """
    from bench3d2d.data import dataset_info, list_datasets, load_dataset

    try:
        extra = dataset_info(source).extra
    except LookupError:
        return []
    if "pretrain_exclude" in extra:
        value = extra["pretrain_exclude"]
        return [value] if isinstance(value, str) else list(value)
    namespace = load_dataset(source, size=size, seed=seed).namespace
    return [
        n
        for n in list_datasets()
        if n != source
        and "test" in dataset_info(n).tags
        and load_dataset(n, size=size, seed=seed).namespace == namespace
    ]


@contextlib.contextmanager
def _lock(path: Path):
    """A claim (the library's one lock scheme), so that concurrent runs pre-train a key only once."""
    with ClaimLock(path, note="SSL pre-training"):
        yield


def pretrain(
    what: PretrainTarget,
    *,
    profile: Profile | str = DEFAULT_PROFILE,
    compute: Compute | None = None,
    root: Path,
    cache_dir: Path,
) -> PretrainResult:
    """Pre-train ``what.model`` on dataset ``what.source`` (OCT -> ``what.modality``), or reuse the cache.

    Data: the source's patient-wise split (``what.split_seed``), train and val parts, minus the
    patients of the ``what.exclude`` datasets. The weights land in ``root/<key>/weights.pt``.
    ``what.data_options`` go to ``load_dataset`` (e.g. synthetic ``difficulty``) and enter the key.
    The model's recipe of set ``what.recipe`` (:mod:`bench3d2d.engine.recipes`) applies over the
    profile; it enters the key as part of the profile (``common`` leaves the built-in profiles, and so
    their keys, as they were) and ``info.json`` records it.
    A cached pre-training whose ``weights.pt`` or ``info.json`` cannot be read is made again (its
    fit resumes or heals, see :func:`~bench3d2d.engine.fit`); this is logged.
    """
    recipe = resolve_recipe(what.model, what.recipe, tables=what.recipe_tables)
    prof = apply_recipe(get_profile(profile), recipe)
    excluded_sets = (
        default_exclusions(what.source, prof.data_size, what.data_seed)
        if what.exclude is None
        else list(what.exclude)
    )
    key = pretrain_key(what, prof, excluded_sets)
    run_dir = Path(root) / key
    with _lock(Path(root) / f".{key}.lock"):
        cached = _cached(run_dir, key)
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        train, val, info = _pretrain_data(what, prof, excluded_sets, Path(cache_dir))
        options = FitOptions(prof, what.seed, None, compute or Compute())
        weights, result = pretrain_on(
            what.model, train, val, what.modality, options, out_dir=run_dir, model_kwargs=what.model_kwargs
        )
        seconds = time.perf_counter() - t0
        info = {
            "key": key,
            "model": what.model,
            "source": what.source,
            "modality": what.modality,
            "profile": prof.name,
            "seed": what.seed,
            "data_seed": what.data_seed,
            "split_seed": what.split_seed,
            **info,
            "score": result.best.score,
            "score_name": "ssim",
            "best_step": result.best.step,
            "steps": result.steps,
            "seconds": seconds,
            "history": result.history,
            "selected": "best validation SSIM",
            "precision": dict(result.precision),
            "recipe": recipe.to_dict(),
            "stop": dict(result.stop),
        }
        atomic_write_json(run_dir / INFO, info, sort_keys=False)
        return PretrainResult(weights, key, result.best.score, False, seconds, info)


def _cached(run_dir: Path, key: str) -> PretrainResult | None:
    """The cached pre-training of ``key`` when its weights and record are readable; else None (logged)."""
    weights = run_dir / WEIGHTS
    if not (weights.exists() and (run_dir / INFO).exists()):
        return None
    try:
        info = json.loads((run_dir / INFO).read_text())
        score = float(info["score"])
        ckpt_io.read(weights)
    except (ValueError, KeyError, TypeError, ckpt_io.CheckpointError) as exc:
        log.warning(
            "cached pre-training %s is unreadable (%s: %s); making it again", run_dir, type(exc).__name__, exc
        )
        (run_dir / INFO).unlink(missing_ok=True)
        weights.unlink(missing_ok=True)
        return None
    log.info("reusing pre-trained weights %s", weights)
    return PretrainResult(weights, key, score, True, 0.0, info)


def _pretrain_data(
    what: PretrainTarget, prof: Profile, excluded_sets: list[str], cache_dir: Path
) -> tuple[CaseSource, CaseSource, dict[str, Any]]:
    """The source's train/val cases without the excluded patients, and the data part of ``info.json``."""
    from bench3d2d.data import load_dataset, make_split, prepare

    source, modality, opts = what.source, what.modality, dict(what.data_options or {})
    ds = load_dataset(source, size=prof.data_size, seed=what.data_seed, **opts)
    prep = prepare(ds, prof.depth, cache_dir)
    split = make_split(prep.patient_ids(), seed=what.split_seed, dataset=source)
    drop: set[str] = set()
    for name in excluded_sets:
        drop |= set(load_dataset(name, size=prof.data_size, seed=what.data_seed, **opts).patient_ids())
    train_p = [p for p in split.train if p not in drop]
    val_p = [p for p in split.val if p not in drop]
    if not train_p or not val_p:
        raise ValueError(
            f"pre-training source {source!r} has no training or validation patients left "
            f"after excluding {excluded_sets}"
        )
    train = prep.subset_patients(train_p)
    val = prep.subset_patients(val_p)
    for part, cases in (("training", train), ("validation", val)):
        missing = [c for c in cases.case_ids if cases.target(c, modality) is None]
        if missing:
            raise ValueError(
                f"pre-training source {source!r}: {part} case {missing[0]!r} has no "
                f"{modality!r} image ({len(missing)} such cases)"
            )
    log.info(
        "pre-training %s on %s -> %s: %d/%d training/validation scans (excluded %d patients of %s)",
        what.model,
        source,
        modality,
        len(train),
        len(val),
        len(drop),
        excluded_sets,
    )
    info = {
        "excluded_datasets": excluded_sets,
        "excluded_patients": sorted(drop),
        "train_patients": train_p,
        "val_patients": val_p,
        "n_train_scans": len(train),
        "n_val_scans": len(val),
    }
    return train, val, info


def clear(root: Path, key: str) -> None:
    """Delete one cached pre-training (weights, checkpoints, log)."""
    shutil.rmtree(Path(root) / key, ignore_errors=True)
