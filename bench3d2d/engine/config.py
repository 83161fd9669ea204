"""Run configuration as small frozen dataclasses: what to train, how, on which hardware, and where.

The engine's entry points take these instead of long argument lists:

* :class:`RunTarget` — *what* one benchmark run trains and tests (model, dataset, test sets,
  label fraction, seed, pre-training and the data/split seeds);
* :class:`Compute` — *on what*: device, CPU threads, whether to apply the CPU convolution
  speed-ups (:func:`~bench3d2d.engine.acceleration.accelerate`), progress bar;
* :class:`RunSettings` — *how*: profile, recipe set and hyper-parameter overrides, a :class:`Compute`,
  how many prediction maps to keep;
* :class:`RunPaths` — *where*: run folder, prepared-data cache, SSL weights cache;
* :class:`FitOptions` — what :func:`~bench3d2d.engine.fit` needs besides the model, task and data;
* :class:`PretrainTarget` — *what* one SSL pre-training trains (model, source, modality, ...).

Example::

    from bench3d2d.engine import RunPaths, RunSettings, RunTarget, train_and_evaluate
    res = train_and_evaluate(RunTarget("fpbnet", "synthetic-ga-s", fraction=5),
                             RunSettings(profile="smoke"), RunPaths("runs/one", "cache"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench3d2d._defaults import DEFAULT_PROFILE, DEFAULT_RECIPE
from bench3d2d.engine._sources import CaseSource
from bench3d2d.engine.profiles import Profile

__all__ = ["Compute", "FitOptions", "PretrainTarget", "RunPaths", "RunSettings", "RunTarget"]


@dataclass(frozen=True)
class Compute:
    """Hardware settings: ``device`` (``None``: CUDA when available), torch CPU ``threads``
    (``None``: torch's default), ``accelerate`` (``None``: on CPU only, where it was measured to pay;
    ``True``/``False`` forces it), and a ``progress`` bar on the terminal."""

    device: str | torch.device | None = None
    threads: int | None = None
    accelerate: bool | None = None
    progress: bool = False


@dataclass(frozen=True)
class RunTarget:
    """What one benchmark run trains and tests.

    ``test_sets``: dataset names tested whole, or ``{name: CaseSource}``, besides the training
    dataset's own test split. ``fraction``: label fraction in percent (``5``, ``"5"``, ``"5%"``).
    ``pretrain``: ``None``/``"none"``, ``"slo"`` or ``"faf"``; ``pretrain_source`` default: the
    dataset's registry metadata; ``pretrain_exclude`` default: the source's metadata.
    ``data_options`` go to every ``load_dataset`` call (e.g. synthetic ``difficulty``).
    ``own_test``: test on the training dataset's own test split too (False, with no ``test_sets``:
    validation only, as a tuning trial must be: no test case is predicted or scored).
    """

    model: str
    dataset: str
    test_sets: Sequence[str] | Mapping[str, str | CaseSource] = ()
    fraction: float | int | str = 100
    seed: int = 0
    pretrain: str | None = None
    pretrain_source: str | None = None
    pretrain_exclude: Sequence[str] | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    data_seed: int = 0
    split_seed: int = 0
    data_options: Mapping[str, Any] = field(default_factory=dict)
    own_test: bool = True

    @property
    def pretrain_modality(self) -> str | None:
        """``"slo"``/``"faf"``, or ``None`` for training from scratch."""
        return None if self.pretrain in (None, "", "none") else str(self.pretrain)


@dataclass(frozen=True)
class RunSettings:
    """How to train: a profile (name or :class:`Profile`; default ``standard``, as on the command line),
    the ``recipe`` set (``common``, ``official`` or ``tuned``, the default as on the command line: the
    model's optimiser settings, :mod:`bench3d2d.engine.recipes`) applied over the
    profile for fine-tuning and SSL pre-training, ``hparams`` overriding both for fine-tuning only, the
    :class:`Compute` settings, how many prediction maps per test set to save, and ``recipe_tables``: the
    user's tuned recipe tables (``bench3d2d tune --write-recipes``) layered over the shipped one."""

    profile: Profile | str = DEFAULT_PROFILE
    hparams: Mapping[str, Any] = field(default_factory=dict)
    recipe: str = DEFAULT_RECIPE
    compute: Compute = field(default_factory=Compute)
    n_prediction_maps: int = 3
    recipe_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes: ``out_dir`` (the run folder), ``cache_dir`` (prepared data) and
    ``pretrain_dir`` (SSL weights; default ``cache_dir/pretrain``)."""

    out_dir: Path | str = "run"
    cache_dir: Path | str = "cache"
    pretrain_dir: Path | str | None = None

    @property
    def pretrain_root(self) -> Path:
        """The SSL weights cache folder."""
        return Path(self.pretrain_dir) if self.pretrain_dir else Path(self.cache_dir) / "pretrain"


@dataclass(frozen=True)
class FitOptions:
    """:func:`~bench3d2d.engine.fit`'s settings: profile, seed, optional initial weights (loaded
    strictly, e.g. SSL weights), :class:`Compute`, and the progress bar's description."""

    profile: Profile | str = "smoke"
    seed: int = 0
    init_weights: Path | None = None
    compute: Compute = field(default_factory=Compute)
    description: str = "train"


@dataclass(frozen=True)
class PretrainTarget:
    """What one SSL pre-training trains: ``model`` reconstructing ``modality`` (``slo``/``faf``)
    from the OCT of dataset ``source``, leaving out the patients of the ``exclude`` datasets
    (``None``: the source's registry metadata). ``recipe``: the recipe set whose optimiser settings
    apply over the profile (``recipe_tables``: the user's tuned tables over the shipped one). The
    seeds, ``data_options``, ``model_kwargs`` and the resolved recipe (as
    part of the profile) enter the cache key."""

    model: str
    source: str
    modality: str
    seed: int = 0
    exclude: Sequence[str] | None = None
    data_seed: int = 0
    split_seed: int = 0
    data_options: Mapping[str, Any] = field(default_factory=dict)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    recipe: str = DEFAULT_RECIPE
    recipe_tables: tuple[str, ...] = ()
