"""Published baselines, each registered through the ``bench3d2d.models`` entry-point group
exactly as a third-party plugin would be."""
