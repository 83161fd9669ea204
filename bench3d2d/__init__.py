"""bench3d2d: benchmark 3D-to-2D segmentation networks under label scarcity."""

from bench3d2d.models import (
    InputShapeError,
    ModelInfo,
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "InputShapeError",
    "ModelInfo",
    "UnknownModelError",
    "__version__",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
