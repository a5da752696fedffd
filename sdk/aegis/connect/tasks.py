"""Helpers for background tasks, shared by the router and the SDK."""

from __future__ import annotations

import asyncio
from typing import Any

# How long a cancelled task is given to end before it is cancelled again. On
# Python 3.11, asyncio.wait_for returns the inner result when the inner future
# and the cancellation arrive together (nats-py's request awaits that way), so a
# loop can lose its cancellation and go on: a watch guard did, and its router's
# shutdown waited forever. Longer than the cleanups a task runs as it ends (a
# watch waits up to 1 s for its unsubscribe), so those are not cut short.
CANCEL_AGAIN = 1.5


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended; re-raise what it raised,
    other than its cancellation."""
    if task is not None:
        await cancel_all([task])


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again any that
    lost its cancellation; then re-raise the first error one of them raised.

    The caller's own cancellation is passed on at once: a watch guard stopped
    while it waited for the watch it was restarting must not carry on.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            task.result()
