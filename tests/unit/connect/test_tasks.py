"""Cancelling background tasks."""

from __future__ import annotations

import asyncio

import pytest
from aegis.connect import tasks
from aegis.connect.tasks import cancel, cancel_all


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


async def test_a_task_that_lost_its_cancellation_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Python 3.11, asyncio.wait_for (inside nats-py's request) can swallow the
    # cancellation of the task awaiting it: a watch guard then slept on, and its
    # router's shutdown waited for it forever.
    monkeypatch.setattr(tasks, "CANCEL_AGAIN", 0.05)
    swallowed = asyncio.Event()

    async def loses_one_cancellation() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.set()  # as a request answered in the same turn would
        await asyncio.sleep(60)

    loop = asyncio.create_task(loses_one_cancellation())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel(loop), 2.0)
    assert swallowed.is_set()
    assert loop.cancelled()


async def test_cancel_all_ends_every_task_and_passes_on_an_error() -> None:
    async def fails_as_it_ends() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise RuntimeError("cleanup failed")

    sleeper = asyncio.create_task(asyncio.sleep(60))
    failing = asyncio.create_task(fails_as_it_ends())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_all([sleeper, failing])
    assert sleeper.cancelled()
    assert failing.done()
