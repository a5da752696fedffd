"""Waiting on a condition from code without an event loop (the synchronous SDK's tests)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(check: Callable[[], object], what: str = "", within: float = 15.0) -> None:
    """Return as soon as ``check()`` is truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what or 'true'} within {within}s")
        time.sleep(0.01)
