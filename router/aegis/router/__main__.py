"""``python -m aegis.router``: same as ``aegis-router``."""

import sys

from .cli import main

sys.exit(main())
