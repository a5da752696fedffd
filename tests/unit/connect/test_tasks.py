"""Cancelling background tasks."""

from __future__ import annotations

import asyncio

import pytest
from aegis.connect.tasks import cancel


async def test_cancel_ends_the_task_and_returns() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await cancel(task)
    assert task.cancelled()
    await cancel(None)  # nothing to do


async def test_a_caller_cancelled_while_it_waits_is_cancelled_too() -> None:
    # A task that takes a while to end (as a watch unsubscribing does), and a
    # guard that cancels it and then would carry on: stopping the guard must stop it.
    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.2))

    carried_on = asyncio.Event()

    async def guard(watch: asyncio.Task[None]) -> None:
        await cancel(watch)
        carried_on.set()
        await asyncio.sleep(60)

    watch = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    guarding = asyncio.create_task(guard(watch))
    await asyncio.sleep(0.05)  # the guard now waits for the watch to end
    guarding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(guarding, 2.0)
    assert not carried_on.is_set()
