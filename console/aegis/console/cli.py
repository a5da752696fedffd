"""``aegis-console`` entry point (the dashboard itself comes with its own issue)."""

from __future__ import annotations

import sys


def main() -> int:
    """Explain that the console is not built yet, and exit non-zero."""
    print(
        "aegis-console: the dashboard is not available yet; use "
        "'curl http://127.0.0.1:8000/api/v1/admin/services' meanwhile.",
        file=sys.stderr,
    )
    return 1
