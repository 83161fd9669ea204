"""Models: the registry, the tensor contract, shared layers and the FPB net.

``bench3d2d.models`` is the public face of the registry (as in timm, the machinery lives in the
private ``_registry`` and ``_contract`` modules). The published baselines live in
``bench3d2d.baselines`` and register through the ``bench3d2d.models`` entry points, exactly as a
third-party plugin does. A model in a single file of the user's needs no packaging:
``load_plugin("my_models.py")`` (the CLI's ``--plugin``) or ``BENCH3D2D_PLUGINS=my_models.py``.
``check_contract`` (``bench3d2d models --check``) checks a model against the tensor contract.
"""

from bench3d2d.models._check import ContractError, check_contract, contract_problems
from bench3d2d.models._contract import InputShapeError, SizeRule
from bench3d2d.models._registry import (
    DEFAULT_DEPTH,
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    DuplicateModelError,
    ModelInfo,
    PluginError,
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    load_env_plugins,
    load_plugin,
    load_plugins,
    model_info,
    plugin_specs,
    register_model,
)

__all__ = [
    "DEFAULT_DEPTH",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "ContractError",
    "DuplicateModelError",
    "InputShapeError",
    "ModelInfo",
    "PluginError",
    "SizeRule",
    "UnknownModelError",
    "check_contract",
    "contract_problems",
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
