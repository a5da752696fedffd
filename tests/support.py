"""What many tests share: waiting on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(check: Callable[[], object], what: str = "", within: float = 15.0) -> None:
    """Return as soon as ``check()`` is truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what or 'true'} within {within}s")
        await asyncio.sleep(0.02)
