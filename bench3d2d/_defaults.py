"""The one set of defaults shared by the Python API and the command line.

``DEFAULT_PROFILE`` and ``DEFAULT_RECIPE`` are what ``bench3d2d run``, ``train``, ``pretrain`` and
``tune`` use without ``--profile`` / ``--recipe``, and what :class:`~bench3d2d.engine.RunSettings`,
:class:`~bench3d2d.engine.PretrainTarget`, :func:`~bench3d2d.engine.ssl.pretrain`,
:func:`~bench3d2d.harness.sweep.expand_plan` (and its ``PlanOptions``) and ``TuneSettings`` use when
they are not given. This module imports nothing and sits in the lowest layers, so every layer can read it.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PROFILE", "DEFAULT_RECIPE"]

#: The training profile of a run when none is named: converged runs that stop on a validation plateau.
DEFAULT_PROFILE = "standard"
#: The recipe set of a run when none is named: the equal-budget tuned table (``engine/recipes.py``).
DEFAULT_RECIPE = "tuned"
