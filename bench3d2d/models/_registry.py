"""Model registry: ``register_model``, ``create_model``, ``list_models``, ``model_info``.

Models are data, not code paths. Each registration is a tiny factory function plus metadata
(size rules, paper, defaults, tags) that the harness reads instead of special-casing names.
Third-party packages add models through the entry-point group ``bench3d2d.models``; those are
loaded lazily on the first lookup, so ``create_model("their_net")`` needs no import. Unpackaged
models come as *plugins*: a module name or a ``.py`` file given to :func:`load_plugin` (the CLI's
``--plugin``) or listed in the ``BENCH3D2D_PLUGINS`` environment variable, which the registry reads
on every lookup, so worker processes that inherit it see the same models.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from bench3d2d.models._contract import InputShapeError, SizeRule

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "DuplicateModelError",
    "InputShapeError",
    "ModelInfo",
    "PluginError",
    "SizeRule",
    "UnknownModelError",
    "count_parameters",
    "create_model",
    "list_models",
    "load_env_plugins",
    "load_plugin",
    "load_plugins",
    "model_info",
    "plugin_specs",
    "register_model",
]

ENTRY_POINT_GROUP = "bench3d2d.models"
#: Plugins (module names or .py files, separated by os.pathsep) every process loads on first lookup.
PLUGINS_ENV = "BENCH3D2D_PLUGINS"
#: The library's own networks, imported on the first lookup (baselines come through entry points).
BUILTIN_MODULES = ("bench3d2d.models.fpbnet",)
_INSTALL_CHECKED = False
DEFAULT_DEPTH = 128

#: The paper protocol's hyper-parameters, shown with every model (``hyperparameters()``). What a run
#: trains with is chosen by its recipe set (``bench3d2d.engine.recipes``): ``common`` is this protocol
#: for every model; ``official`` reads a registration's ``defaults["official"]`` (the published
#: optimiser), else the recipe keys given directly in ``defaults``.
PAPER_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "batch_size": 8,
}

#: Optuna search space used when a registration gives none: name -> (kind, *args).
#: The learning rate is drawn per optimiser, around each one's usual values (SGD with momentum 0.9
#: trains at 1e-3..0.3, Adam at 1e-5..1e-2), so that no trial is spent on a rate that diverges by
#: construction (Adam at 0.2) or cannot move (SGD at 1e-4).
DEFAULT_SEARCH_SPACE: dict[str, tuple] = {
    "optimizer": ("categorical", ["sgd", "adam"]),
    "lr": ("log", {"given": "optimizer", "sgd": (1e-3, 0.3), "adam": (1e-5, 1e-2)}),
}


class UnknownModelError(LookupError):
    """No model is registered under the requested name."""


class DuplicateModelError(ValueError):
    """A different factory is already registered under the same name."""


class PluginError(ImportError):
    """A plugin asked for by name or path (``--plugin``, ``BENCH3D2D_PLUGINS``) could not be imported."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything the registry knows about one model, without building it."""

    name: str
    factory: Callable[..., nn.Module]
    size_rule: SizeRule
    paper: str = ""
    description: str = ""
    reduction: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, tuple] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    source: str = ""

    def hyperparameters(self) -> dict[str, Any]:
        """The paper protocol updated by the registration's ``defaults`` (including its ``official``
        entry, the published recipe that the ``official`` recipe set applies)."""
        return {**PAPER_DEFAULTS, **self.defaults}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (no factory object)."""
        return {
            "name": self.name,
            "paper": self.paper,
            "description": self.description,
            "reduction": self.reduction,
            "constraints": self.size_rule.to_dict(),
            "constraints_text": self.size_rule.describe(),
            "defaults": self.hyperparameters(),
            "search_space": {k: list(v) for k, v in self.search_space.items()},
            "tags": list(self.tags),
            "source": self.source,
        }


_REGISTRY: dict[str, ModelInfo] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_ERRORS: dict[str, str] = {}
#: Plugins imported so far, in order: canonical spec (absolute file path or module name) -> module.
_PLUGINS: dict[str, ModuleType] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    h_multiple: int = 1,
    w_multiple: int = 1,
    h_min: int = 1,
    w_min: int = 1,
    depth: Mapping[str, Any] | None = None,
    paper: str = "",
    description: str = "",
    reduction: str = "",
    defaults: Mapping[str, Any] | None = None,
    search_space: Mapping[str, tuple] | None = None,
    tags: Iterable[str] = (),
):
    """Register a model factory; use as ``@register_model`` or ``@register_model(h_multiple=4, ...)``.

    ``depth`` is ``{"min": 64}`` (any depth from 64), ``{"fixed": True}`` (built for the depth
    passed to the factory; ``"multiple"`` and ``"min"`` may be added), or ``None`` (any depth).
    The factory is called as ``factory(in_channels=1, out_channels=1, depth=D, **kwargs)``.
    """

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        model_name = name or factory.__name__
        _check_factory_signature(model_name, factory)
        rule = SizeRule.from_metadata(
            h_multiple=h_multiple, w_multiple=w_multiple, h_min=h_min, w_min=w_min, depth=depth
        )
        doc = inspect.getdoc(factory) or ""
        info = ModelInfo(
            name=model_name,
            factory=factory,
            size_rule=rule,
            paper=paper,
            description=description or (doc.splitlines()[0] if doc else ""),
            reduction=reduction,
            defaults=dict(defaults or {}),
            search_space=dict(search_space or DEFAULT_SEARCH_SPACE),
            tags=tuple(tags),
            source=f"{factory.__module__}:{factory.__qualname__}",
        )
        existing = _REGISTRY.get(model_name)
        if existing is not None and existing.source != info.source:
            raise DuplicateModelError(
                f"model name {model_name!r} is already registered by {_origin(existing.factory)}; "
                f"{_origin(factory)} cannot register it again (names are owned: choose another name)"
            )
        _REGISTRY[model_name] = info
        return factory

    if fn is not None:
        return decorate(fn)
    return decorate


def _origin(factory: Callable[..., nn.Module]) -> str:
    """Where a factory comes from, for messages: the built-in module, a plugin file, or a module."""
    module_name = getattr(factory, "__module__", "") or ""
    where = f"{module_name}:{getattr(factory, '__qualname__', '?')}"
    if module_name.startswith(("bench3d2d.models.", "bench3d2d.baselines.")):
        return f"the built-in model {where}"
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if module_name.startswith("bench3d2d_plugin_") and path:
        return f"plugin file {path}"
    return f"module {where}"


def _check_factory_signature(name: str, factory: Callable[..., nn.Module]) -> None:
    params = inspect.signature(factory).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [p for p in ("in_channels", "out_channels", "depth") if p not in params]
    if missing and not takes_kwargs:
        raise TypeError(
            f"factory for model {name!r} must accept in_channels, out_channels and depth "
            f"keyword arguments (missing: {', '.join(missing)})"
        )


def _entry_points() -> list[metadata.EntryPoint]:
    """The group's entry points, this library's own (the baselines) first: a third-party package that
    reuses a baseline's name then fails to load, never the baseline."""
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(eps, key=lambda ep: getattr(getattr(ep, "dist", None), "name", None) != "bench3d2d")


def _load_entry_point(ep: metadata.EntryPoint) -> None:
    try:
        ep.load()
    except Exception as exc:  # a broken plugin must not break the library
        _ENTRY_POINT_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"bench3d2d: could not load model plugin {ep.name!r} ({ep.value}): {exc}",
            RuntimeWarning,
            stacklevel=3,
        )


def load_plugins(force: bool = False) -> None:
    """Import every module advertised in the ``bench3d2d.models`` entry-point group (once), and the
    plugins named in ``BENCH3D2D_PLUGINS`` (each once, however often the variable changes)."""
    global _ENTRY_POINTS_LOADED
    if force:
        _ENTRY_POINTS_LOADED = False
    _ensure_builtins()


def _load_library_models() -> None:
    """The built-in modules, then every entry point (once): the names they register are taken before
    any plugin is imported, so a plugin can never replace or hide a built-in model."""
    global _ENTRY_POINTS_LOADED
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _warn_if_not_installed()
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in _entry_points():
        _load_entry_point(ep)


def _ensure_builtins() -> None:
    _load_library_models()
    load_env_plugins()


# -- plugins: a module or a single .py file, asked for by name ------------------------------------------
def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _canonical(spec: str | os.PathLike[str]) -> str:
    text = os.fspath(spec).strip()
    if not text:
        raise PluginError("empty plugin name: give a module name or the path of a .py file")
    return str(Path(text).expanduser().resolve()) if _is_file(text) else text


def load_plugin(spec: str | os.PathLike[str]) -> ModuleType:
    """Import a plugin that registers models: a module name (``my_models``) or a ``.py`` file's path.

    Each plugin is imported once per process; a file gets a private module name derived from its
    path, so the same file is the same module in every worker. Raises :class:`PluginError` naming
    the module or file (and the line) when it cannot be found or raises on import.
    """
    key = _canonical(spec)
    _load_library_models()  # names are owned: built-ins and packaged models register first
    if key not in _PLUGINS:
        _PLUGINS[key] = _import_file(Path(key)) if _is_file(key) else _import_module(key)
    return _PLUGINS[key]


def _import_file(path: Path) -> ModuleType:
    if path.suffix != ".py" or not path.is_file():
        raise PluginError(f"plugin file {path} does not exist or is not a .py file")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"bench3d2d_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and the registry's sources need it there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PluginError(
            f"plugin file {path} failed to import{_where(exc, path)}: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _where(exc: Exception, path: Path) -> str:
    """`` (line N)``: where in the plugin file the import failed, when the traceback says."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" (line {lines[-1]})" if lines else ""


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if missing and (name == missing or name.startswith(missing + ".")):
            raise PluginError(
                f"plugin module {name!r} not found: it is neither installed nor on the Python path "
                "(to load a single file, give its path ending in .py)"
            ) from exc
        raise PluginError(f"plugin module {name!r} failed to import: {type(exc).__name__}: {exc}") from exc


def _env_specs() -> list[str]:
    return [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s.strip()]


def load_env_plugins() -> list[str]:
    """Load every plugin listed in ``BENCH3D2D_PLUGINS`` (``os.pathsep``-separated); returns them."""
    specs = _env_specs()
    for spec in specs:
        load_plugin(spec)
    return [_canonical(s) for s in specs]


def plugin_specs() -> list[str]:
    """The plugins a worker process must load to see the models this one sees (canonical, in order):
    those loaded here and those named in ``BENCH3D2D_PLUGINS``."""
    return list(dict.fromkeys([*_PLUGINS, *(_canonical(s) for s in _env_specs())]))


def _warn_if_not_installed() -> None:
    """The built-in baselines register through entry points, which only an installed package has."""
    global _INSTALL_CHECKED
    if _INSTALL_CHECKED:
        return
    _INSTALL_CHECKED = True
    try:
        metadata.distribution("bench3d2d")
    except metadata.PackageNotFoundError:
        warnings.warn(
            "bench3d2d is imported from a checkout that is not installed, so the built-in baselines "
            "(registered through the 'bench3d2d.models' entry points) are not available; "
            "run `pip install -e .` in the checkout",
            RuntimeWarning,
            stacklevel=4,
        )


def _lookup(name: str) -> ModelInfo:
    _ensure_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _ENTRY_POINT_ERRORS:
        raise UnknownModelError(
            f"model {name!r} comes from a plugin that failed to load: {_ENTRY_POINT_ERRORS[name]}"
        )
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}. "
        f"(A model defined in your own file: --plugin FILE.py or {PLUGINS_ENV}=FILE.py.)"
    )


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model (loads plugins on first use)."""
    return _lookup(name)


def list_models(pattern: str | Iterable[str] = "*", exclude: Iterable[str] = ()) -> list[str]:
    """Sorted names of registered models matching fnmatch pattern(s), minus ``exclude`` patterns."""
    load_plugins()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = list(exclude)
    names = sorted(_REGISTRY)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in excludes)]


def create_model(
    name: str,
    in_channels: int = 1,
    out_channels: int = 1,
    depth: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; its forward checks the input against the declared size rule.

    ``depth`` is the input depth the model will see (default 128, the paper's); models whose
    layers do not depend on it ignore it.
    """
    info = _lookup(name)
    depth = DEFAULT_DEPTH if depth is None else int(depth)
    info.size_rule.check_build_depth(depth, model=name)
    model = info.factory(in_channels=in_channels, out_channels=out_channels, depth=depth, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory of model {name!r} returned {type(model).__name__}, not nn.Module")
    if getattr(model, "size_rule", None) is None:
        # Third-party models get the same up-front check as ours, before any layer runs.
        model.size_rule = info.size_rule.bind(depth)  # type: ignore[assignment]  # a new attribute
        model.register_forward_pre_hook(_size_check_hook)
    model.registry_name = name  # type: ignore[assignment]
    return model


def _size_check_hook(module: nn.Module, args: tuple) -> None:
    if args and isinstance(args[0], torch.Tensor):
        rule: SizeRule = module.size_rule  # type: ignore[assignment]  # set by create_model
        rule.check(tuple(args[0].shape), model=getattr(module, "registry_name", ""))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
