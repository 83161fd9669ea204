"""``python -m bench3d2d``."""

import sys

from bench3d2d.cli import main

sys.exit(main())
