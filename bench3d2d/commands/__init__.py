"""Sub-commands of the ``bench3d2d`` CLI, one module each (see ``bench3d2d.cli``)."""
