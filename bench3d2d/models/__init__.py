"""The library's own networks. Importing a module listed here registers its models."""

#: Modules imported on the first registry lookup (baselines come through entry points).
BUILTIN_MODULES = ("bench3d2d.models.fpbnet",)
