"""``python -m render_kernels ...``: see render_kernels.cli."""

import sys

from .cli import main

sys.exit(main())
