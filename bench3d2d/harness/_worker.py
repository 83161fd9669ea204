"""The default sweep backend: one run or pre-training through the training engine (private).

``execute_run`` turns a :class:`~bench3d2d.harness.sweep.RunSpec` into one call of
``engine.train_and_evaluate`` in the run folder; ``execute_pretrain`` into one call of
``ssl.pretrain`` in the pre-training folder. Shared SSL weights are made first, once per key,
under the pre-training's claim (``_runner.ensure_pretrained``, before the runner calls this
backend), then found in the cache by the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench3d2d.harness._spec import PretrainSpec, RunSpec
from bench3d2d.harness._splits import check_split, expected_split, record_split, split_record_path
from bench3d2d.harness._store import ResultsStore

if TYPE_CHECKING:
    from bench3d2d.engine.config import Compute

#: Threads per worker (the subprocess executor sets it to cores / jobs); unset: torch's default.
THREADS_ENV = "BENCH3D2D_THREADS"
TEST_SUFFIX = ":test"


#: ``1``/``0`` forces the CPU convolution speed-ups (``accelerate``) on/off; unset: on CPU only.
ACCELERATE_ENV = "BENCH3D2D_ACCELERATE"


def _threads() -> int | None:
    value = os.environ.get(THREADS_ENV)
    return int(value) if value else None


def _compute() -> Compute:
    """The worker's compute settings: threads and acceleration from the environment, default device."""
    from bench3d2d.engine.config import Compute

    value = os.environ.get(ACCELERATE_ENV, "").strip().lower()
    choice = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}.get(value)
    if value and choice is None:
        raise ValueError(f"{ACCELERATE_ENV}={value!r}: use 1/0 (or on/off, true/false)")
    return Compute(threads=_threads(), accelerate=choice)


def engine_test_sets(spec: RunSpec) -> list[str]:
    """The datasets tested whole; ``"<train dataset>:test"`` is the engine's own test split."""
    whole = []
    for name in spec.test_sets:
        if name.endswith(TEST_SUFFIX):
            if name[: -len(TEST_SUFFIX)] != spec.train_dataset:
                raise ValueError(
                    f"test set {name!r}: only the training dataset's own test split can be named with "
                    f"':test' (training dataset: {spec.train_dataset!r})"
                )
            continue
        whole.append(name)
    return whole


def _planned_split(spec: RunSpec, target: Any, store: ResultsStore) -> tuple[Path, dict[str, Any]]:
    """The split record's path and the split the run will use, checked against the record before
    training (a mismatch or too few patients fails here, not after the compute is spent)."""
    import warnings

    from bench3d2d.data import load_dataset
    from bench3d2d.engine.profiles import get_profile

    size = get_profile(spec.profile).with_overrides(spec.hparams).data_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the engine loads the dataset again and warns there
        ds = load_dataset(spec.train_dataset, size=size, seed=target.data_seed, **dict(target.data_options))
    split = expected_split(ds, spec.train_dataset, target.split_seed)
    path = split_record_path(store, spec.train_dataset, split["fingerprint"])
    check_split(path, split)
    return path, split


def execute_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    store: ResultsStore,
    progress: Any = None,
    on_validation: Any = None,
) -> pd.DataFrame:
    """Train and test one run with the engine; returns the long per-case table."""
    from bench3d2d.engine import RunPaths, RunSettings, RunTarget, train_and_evaluate
    from bench3d2d.engine.profiles import get_profile

    pre = spec.pretrain_spec()  # ensured complete by the runner before it called us
    pretrain_dir = store.pretrain_path(pre) if pre is not None else None
    rounds = get_profile(spec.profile).with_overrides(spec.hparams).rounds
    done = [0]

    def validated(step: int, score: float) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], rounds, "")
        if on_validation is not None:
            on_validation(step, score)

    target = RunTarget(
        spec.model,
        spec.train_dataset,
        engine_test_sets(spec),
        fraction=spec.fraction,
        seed=spec.seed,
        pretrain=spec.pretrain,
        pretrain_source=spec.pretrain_source,
        own_test=f"{spec.train_dataset}{TEST_SUFFIX}" in spec.test_sets,
    )
    planned = _planned_split(spec, target, store) if spec.test_sets else None
    peak_scope = _reset_peak_memory()
    result = train_and_evaluate(
        target,
        RunSettings(
            profile=spec.profile,
            recipe=spec.recipe,
            hparams=dict(spec.hparams),
            compute=_compute(),
            recipe_tables=spec.recipe_tables,
        ),
        RunPaths(run_dir, store.cache_dir, pretrain_dir),
        on_validation=validated,
    )
    if planned is not None:
        record_split(planned[0], {**result.split, "fingerprint": planned[1]["fingerprint"]})
    cases = result.cases.copy()
    cases.attrs["run_info"] = {
        "timings": dict(result.timings),
        "checkpoints": int(result.extra.get("k", len(result.fit.checkpoints))),
        "best_validation": float(result.fit.best.score),
        "pretrained": result.pretrain,
        "profile": result.extra.get("profile"),
        "precision": result.extra.get("precision"),
        "recipe": result.extra.get("recipe"),
        "stop": result.extra.get("stop"),
        "history": validation_history(result.fit.history),
        "parameters": result.extra.get("parameters"),
        "peak_memory_mb": _peak_memory_mb(),
        "peak_memory_scope": peak_scope,
    }
    return cases


def validation_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fit's validation history as ``result.json`` records it: ``step``, mean training ``loss`` since
    the previous validation, and validation ``score`` (Dice; SSIM for a pre-training), one per validation."""
    return [{"step": int(h["step"]), "loss": float(h["loss"]), "score": float(h["score"])} for h in history]


def _reset_peak_memory() -> str:
    """Reset this process's peak resident memory (Linux ``clear_refs``), so the next reading is this
    run's own peak: ``"run"`` when that worked, ``"process"`` (peak since the process started) if not."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "run"
    except OSError:
        return "process"


def _peak_memory_mb() -> float | None:
    """Peak resident memory of this process in MiB (``VmHWM``), or None where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


def execute_pretrain(
    pre: PretrainSpec,
    out_dir: Path,
    *,
    store: ResultsStore,
    progress: Any = None,
) -> dict[str, Any]:
    """SSL pre-training of one key into ``out_dir`` (the engine's cache lives inside it)."""
    from bench3d2d.engine import PretrainTarget, ssl

    what = PretrainTarget(
        pre.model, pre.source, pre.modality, seed=pre.seed, recipe=pre.recipe, recipe_tables=pre.recipe_tables
    )
    res = ssl.pretrain(
        what, profile=pre.profile, compute=_compute(), root=Path(out_dir), cache_dir=store.cache_dir
    )
    return {
        "weights": str(res.weights),
        "engine_key": res.key,
        "validation_ssim": float(res.score),
        "cached": bool(res.cached),
        "engine_seconds": float(res.seconds),
        "precision": res.info.get("precision"),
        "history": validation_history(res.info.get("history") or []),
    }
