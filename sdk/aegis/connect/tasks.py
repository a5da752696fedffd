"""Helpers for background tasks, shared by the router and the SDK."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended.

    The caller's own cancellation is passed on, not swallowed with the task's:
    a watch guard stopped while it waited for the watch it was restarting went
    on running, and whoever stopped it waited forever.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
