"""``python -m aegis.router``: same as ``aegis-router``."""

import sys

from .launch import main

sys.exit(main())
