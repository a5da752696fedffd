"""``python -m aegis.router``: same as ``aegis-router``."""

import sys

from aegis.router.launch import main

sys.exit(main())
