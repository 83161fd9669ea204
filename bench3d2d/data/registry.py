"""Dataset registry: ``register_dataset``, ``list_datasets``, ``dataset_info``, ``load_dataset``.

A registered source is a factory ``factory(size: str, seed: int, **options) -> Dataset``. Besides
registered names, ``load_dataset`` accepts a path: a manifest (``.csv``/``.json``), a folder holding
``manifest.csv``/``manifest.json``, a Heidelberg ``.vol`` file or a folder of them, or an OCTA-500
folder (``OCT/<subject>/<n>.bmp``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench3d2d.data.records import DataError, Dataset

#: Modules whose import registers the built-in datasets (loaded on the first lookup).
BUILTIN_MODULES = ("bench3d2d.data.synthetic",)

__all__ = [
    "SIZES",
    "DatasetInfo",
    "UnknownDatasetError",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

#: Size presets every registered source understands.
SIZES = ("quick", "paper")


class UnknownDatasetError(LookupError):
    """No dataset is registered under the name and it is not a readable path."""


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset source and its metadata."""

    name: str
    factory: Callable[..., Dataset]
    description: str = ""
    task: str = ""
    tags: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, DatasetInfo] = {}


def _source(factory: Callable) -> str:
    return f"{factory.__module__}:{factory.__qualname__}"


_BUILTINS_LOADED = False


def register_dataset(name: str, *, description: str = "", task: str = "", tags=(), **extra):
    """Decorator registering ``factory(size="quick", seed=0, **options) -> Dataset`` under ``name``."""

    def decorate(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        doc = inspect.getdoc(factory) or ""
        existing = _REGISTRY.get(name)
        if existing is not None and _source(existing.factory) != _source(factory):
            raise ValueError(f"dataset name {name!r} is already registered by {existing.factory.__module__}")
        _REGISTRY[name] = DatasetInfo(
            name=name,
            factory=factory,
            description=description or (doc.splitlines()[0] if doc else ""),
            task=task,
            tags=tuple(tags),
            extra=dict(extra),
        )
        return factory

    return decorate


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for module in BUILTIN_MODULES:  # registration by import, as for models (no import cycle)
            importlib.import_module(module)


def list_datasets(pattern: str = "*") -> list[str]:
    """Sorted names of registered datasets matching an fnmatch pattern."""
    _ensure_builtins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a registered dataset; unknown names list close matches."""
    _ensure_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise UnknownDatasetError(f"unknown dataset {name!r} (not registered and not an existing path){hint}")
    return _REGISTRY[name]


def load_dataset(name_or_manifest_path: str, size: str = "quick", seed: int = 0, **options) -> Dataset:
    """A registered dataset by name, or a dataset read from a path (manifest, .vol, OCTA-500 folder).

    ``size`` is a preset (``quick``: CPU-small, ``paper``: the paper's raw sizes); ``seed`` fixes the
    synthetic cohort; ``options`` go to the factory (e.g. ``difficulty={...}`` for synthetic data, or
    reader options such as ``label=`` for OCTA-500).
    """
    target = str(name_or_manifest_path)
    _ensure_builtins()
    if target in _REGISTRY:
        if size not in SIZES:
            raise ValueError(f"unknown size preset {size!r} (choose from {', '.join(SIZES)})")
        return _REGISTRY[target].factory(size=size, seed=seed, **options)
    path = Path(target).expanduser()
    if path.exists():
        return read_path(path, **options)
    if any(sep in target for sep in ("/", "\\")) or path.suffix.lower() in (".csv", ".json", ".vol"):
        raise FileNotFoundError(f"dataset path not found: {path}")
    dataset_info(target)  # raises UnknownDatasetError with suggestions
    raise AssertionError("unreachable")


def read_path(path: Path, **options) -> Dataset:
    """Pick the reader for a file or folder (manifest, Heidelberg .vol, OCTA-500)."""
    from bench3d2d.data import heyex, manifest, octa500

    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".csv", ".json"):
            return manifest.read_manifest(path, **options)
        if suffix == ".vol":
            return heyex.read_vol_dataset([path], name=path.stem, **options)
        raise DataError(f"{path}: not a manifest (.csv/.json) or Heidelberg .vol file")
    for candidate in ("manifest.csv", "manifest.json"):
        if (path / candidate).is_file():
            return manifest.read_manifest(path / candidate, **options)
    vols = sorted(p for p in path.iterdir() if p.suffix.lower() == ".vol")
    if vols:
        return heyex.read_vol_dataset(vols, name=path.name, **options)
    if octa500.looks_like_octa500(path):
        return octa500.read_octa500(path, **options)
    raise DataError(
        f"{path}: no manifest.csv/manifest.json, no .vol files and not an OCTA-500 folder "
        "(see docs/data.md for the accepted layouts)"
    )
