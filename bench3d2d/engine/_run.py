"""``train_and_evaluate``: one benchmark run from names to the per-case metrics table.

Load and prepare the training dataset, split it patient-wise, take the label fraction, pre-train
(or reuse cached SSL weights), fine-tune with ``fit``, then ensemble-predict every test set and
write ``split.json``, ``cases.csv``, a few prediction maps and ``log.txt`` into the run folder.
``result.json`` (the completion marker) is the harness's job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench3d2d._io import atomic_write, atomic_write_json, atomic_write_text, safe_name
from bench3d2d.engine._evaluate import evaluate, load_ensemble
from bench3d2d.engine._fit import FitResult, build_model, fit, run_log
from bench3d2d.engine._sources import CaseSource
from bench3d2d.engine.config import FitOptions, PretrainTarget, RunPaths, RunSettings, RunTarget
from bench3d2d.engine.profiles import Profile, get_profile
from bench3d2d.engine.recipes import apply_recipe, resolve_recipe
from bench3d2d.engine.tasks import segmentation
from bench3d2d.models import count_parameters, model_info
from bench3d2d.results import CASE_COLUMNS, CASE_ID_KEY, TEST_SET_KEY

log = logging.getLogger("bench3d2d.engine")


@dataclass
class RunResult:
    """Outcome of one run: long per-case metrics, the fit, the split record and timings (s)."""

    cases: pd.DataFrame
    fit: FitResult
    split: dict[str, Any]
    timings: dict[str, float]
    pretrain: dict[str, Any] | None = None
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(
        self, metrics: Sequence[str] = ("dice", "area_diff_mm2", "precision", "recall", "hd95_mm")
    ) -> pd.DataFrame:
        """Mean, std, median and NaN count per test set and metric."""
        from bench3d2d.evaluation.metrics import summarise

        sub = self.cases[self.cases["metric"].isin(list(metrics))]
        return summarise(sub, by=("test_set", "metric"))


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))  # type: ignore[arg-type]


def long_table(
    wide: pd.DataFrame,
    *,
    train_dataset: str,
    test_set: str,
    fraction: float,
    model: str,
    pretrain: str,
    seed: int,
) -> pd.DataFrame:
    """Wide per-case metrics (``case_id`` + one column per metric) -> the long ``cases.csv`` form."""
    ids = [c for c in ("case_id", "patient_id") if c in wide.columns]
    long = wide.melt(id_vars=ids, var_name="metric", value_name="value")
    if "patient_id" not in long.columns:
        long["patient_id"] = ""
    long.insert(0, "train_dataset", train_dataset)
    long.insert(1, "test_set", test_set)
    long.insert(2, "fraction", fraction)
    long["model"] = model
    long["pretrain"] = pretrain
    long["seed"] = int(seed)
    return long[list(CASE_COLUMNS)]


def _fraction_number(fraction: float | int | str) -> float:
    from bench3d2d.data.splits import parse_fraction

    value = float(parse_fraction(fraction) * 100)
    return int(value) if value.is_integer() else value


def train_and_evaluate(
    target: RunTarget,
    settings: RunSettings | None = None,
    paths: RunPaths | None = None,
    *,
    on_validation: Callable[[int, float], None] | None = None,
) -> RunResult:
    """One benchmark run: train ``target.model`` on a label fraction (percent) of ``target.dataset``.

    Test sets: the training dataset's own test split (named like the dataset) plus every entry
    of ``target.test_sets`` (dataset names, used whole, or ``{name: CaseSource}``); patients seen
    in training or validation are removed from them. ``target.pretrain`` is ``None``/``"none"``,
    ``"slo"`` or ``"faf"``: weights come from :func:`bench3d2d.engine.ssl.pretrain` on
    ``target.pretrain_source`` (default: the training dataset's registry metadata
    ``pretrain_source``), cached in ``paths.pretrain_root``. The model's recipe of set
    ``settings.recipe`` applies over the profile (pre-training too); ``settings.hparams`` override
    both for fine-tuning only. ``RunResult.extra`` records the resolved ``recipe`` and the fit's
    ``stop`` (reason and step) next to the effective ``profile``. ``on_validation(step, score)`` is
    called after each validation.
    Writes ``split.json``, ``cases.csv``, ``predictions/<test_set>/<case>.npz``, ``checkpoints/``
    and ``log.txt`` under ``paths.out_dir``; returns a :class:`RunResult`.
    """
    settings = settings or RunSettings()
    paths = paths or RunPaths()
    out_dir = Path(paths.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_info(target.model)  # an unknown model fails here, before any data is prepared
    base_profile = get_profile(settings.profile)
    recipe = resolve_recipe(target.model, settings.recipe, tables=settings.recipe_tables)
    prof = apply_recipe(base_profile, recipe).with_overrides(settings.hparams)
    pre_label = target.pretrain_modality or "none"
    frac = _fraction_number(target.fraction)
    timings: dict[str, float] = {}
    t_start, cpu_start = time.perf_counter(), time.process_time()

    with run_log(out_dir / "log.txt"):
        log.info(
            "run: model %s, dataset %s, fraction %s %%, seed %d, profile %s, recipe %s (%s: %s), "
            "pretrain %s, hparams %s",
            target.model,
            target.dataset,
            frac,
            target.seed,
            prof.name,
            recipe.recipe_set,
            recipe.source,
            dict(recipe.values),
            pre_label,
            dict(settings.hparams or {}),
        )
        if recipe.note:
            log.info("recipe: %s", recipe.note)
        t0 = time.perf_counter()
        train, val, sources, split_record = _prepare_data(target, prof, Path(paths.cache_dir), frac)
        atomic_write_json(out_dir / "split.json", split_record, sort_keys=False)
        timings["data_s"] = time.perf_counter() - t0

        init, pre_info = None, None
        if target.pretrain_modality is not None:
            t0 = time.perf_counter()
            init, pre_info = _pretrained_weights(target, base_profile, settings, paths)
            timings["pretrain_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        torch.manual_seed(int(target.seed))
        model = build_model(target.model, prof.depth, 1, 1, **dict(target.model_kwargs or {}))
        options = FitOptions(prof, target.seed, init, settings.compute, f"{target.model} {pre_label} {frac}%")
        fit_result = fit(
            model, segmentation(), train, val, options, out_dir=out_dir, on_validation=on_validation
        )
        timings["fit_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        models = load_ensemble(
            [c.path for c in fit_result.checkpoints], settings.compute.device, settings.compute.accelerate
        )
        labels = {
            "train_dataset": target.dataset,
            "fraction": frac,
            "model": target.model,
            "pretrain": pre_label,
            "seed": target.seed,
        }
        cases = _test(models, sources, prof, settings.n_prediction_maps, out_dir, labels)
        timings["evaluate_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        timings["cpu_s"] = time.process_time() - cpu_start
        log.info(
            "run done in %.1f s (%s)",
            timings["total_s"],
            ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
        )
    return RunResult(
        cases,
        fit_result,
        split_record,
        timings,
        pre_info,
        out_dir,
        {
            "k": len(models),
            "profile": prof.to_dict(),
            "precision": dict(fit_result.precision),
            "recipe": recipe.to_dict(),
            "stop": dict(fit_result.stop),
            "parameters": count_parameters(model),
        },
    )


def _named_test_sets(target: RunTarget) -> list[tuple[str, str | CaseSource]]:
    tests = target.test_sets
    return list(tests.items()) if isinstance(tests, Mapping) else [(n, n) for n in (tests or [])]


def _prepare_data(
    target: RunTarget, prof: Profile, cache_dir: Path, frac: float
) -> tuple[CaseSource, CaseSource, dict[str, CaseSource], dict[str, Any]]:
    """Training, validation and test sources (test patients seen in training removed) and the split record."""
    from bench3d2d.data import label_subset, load_dataset, make_split, prepare
    from bench3d2d.data.splits import require_split_patients

    opts = dict(target.data_options or {})
    train_dataset, seed = target.dataset, target.seed
    ds = load_dataset(train_dataset, size=prof.data_size, seed=target.data_seed, **opts)
    require_split_patients(len(ds.patient_ids()), train_dataset)  # before anything is prepared
    prep = prepare(ds, prof.depth, cache_dir)
    split = make_split(prep.patient_ids(), seed=target.split_seed, dataset=train_dataset)
    labelled = label_subset(split.train, frac, seed)
    train = prep.subset_patients(labelled)
    val = prep.subset_patients(split.val)
    sources: dict[str, CaseSource] = {}
    if target.own_test:
        sources[train_dataset] = prep.subset_patients(split.test)
    seen = set(labelled) | set(split.val)
    removed: dict[str, list[str]] = {}
    for name, src in _named_test_sets(target):
        if name == train_dataset:
            continue
        if isinstance(src, str):
            src = prepare(
                load_dataset(src, size=prof.data_size, seed=target.data_seed, **opts), prof.depth, cache_dir
            )
        patient_of = getattr(src, "patient", None)
        if patient_of is not None:
            overlap = [c for c in src.case_ids if patient_of(c) in seen]
            if overlap:
                removed[name] = overlap
                # a source that knows patients can also subset (ArrayCases, PreparedDataset)
                src = src.subset([c for c in src.case_ids if c not in set(overlap)])  # type: ignore[attr-defined]
                log.warning(
                    "test set %s: removed %d cases of patients used for training/validation",
                    name,
                    len(overlap),
                )
        sources[name] = src
    split_record = {
        **split.to_dict(),
        "fraction": frac,
        "seed": int(seed),
        "split_seed": int(target.split_seed),
        "label_patients": labelled,
        "n_label_patients": len(labelled),
        "n_train_scans": len(train.case_ids),
        "n_val_scans": len(val.case_ids),
        "test_sets": {n: len(s.case_ids) for n, s in sources.items()},
        "removed_from_test_sets": removed,
    }
    return train, val, sources, split_record


def _pretrained_weights(
    target: RunTarget, base_profile: Profile, settings: RunSettings, paths: RunPaths
) -> tuple[Path, dict[str, Any]]:
    """The SSL weights of the run (pre-trained now or found in the cache, under the run's recipe set)
    and their record."""
    from bench3d2d.engine import ssl

    source = target.pretrain_source or ssl.default_source(target.dataset)
    what = PretrainTarget(
        target.model,
        source,
        str(target.pretrain_modality),
        target.seed,
        target.pretrain_exclude,
        target.data_seed,
        target.split_seed,
        dict(target.data_options or {}),
        dict(target.model_kwargs or {}),
        settings.recipe,
        tuple(settings.recipe_tables),
    )
    res = ssl.pretrain(
        what,
        profile=base_profile,
        compute=settings.compute,
        root=paths.pretrain_root,
        cache_dir=Path(paths.cache_dir),
    )
    info = {
        "key": res.key,
        "weights": str(res.weights),
        "score": res.score,
        "cached": res.cached,
        "seconds": res.seconds,
        "source": source,
    }
    log.info(
        "pre-trained weights %s (SSIM %.4f, %s)",
        res.weights,
        res.score,
        "cached" if res.cached else f"{res.seconds:.1f} s",
    )
    return res.weights, info


def _test(
    models: list,
    sources: Mapping[str, CaseSource],
    prof: Profile,
    n_prediction_maps: int,
    out_dir: Path,
    labels: Mapping[str, Any],
) -> pd.DataFrame:
    """Ensemble-evaluate every test set; write a few prediction maps and ``cases.csv``."""
    tables = []
    for name, src in sources.items():
        wide, maps = evaluate(
            models,
            src,
            amp=prof.amp,
            keep_maps=n_prediction_maps,
            batch=prof.eval_batch,
            channels_last=prof.channels_last,
        )
        wide.insert(1, "patient_id", [getattr(src, "patient", lambda _: "")(c) for c in wide["case_id"]])
        tables.append(long_table(wide, test_set=name, **labels))
        for cid, arrays in maps.items():
            pred_dir = out_dir / "predictions" / safe_name(name)
            ids = {CASE_ID_KEY: np.array(str(cid)), TEST_SET_KEY: np.array(str(name))}
            _save_npz_atomic(pred_dir / f"{safe_name(cid)}.npz", {**arrays, **ids})
        dice = wide["dice"]
        log.info(
            "test %s: %d cases, Dice mean %.4f (median %.4f), k = %d checkpoints",
            name,
            len(wide),
            dice.mean(),
            dice.median(),
            len(models),
        )
    if not tables:
        log.info("no test set: validation only (no test case predicted or scored)")
    cases = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(CASE_COLUMNS))
    _write_csv_atomic(cases, out_dir / "cases.csv")
    return cases
