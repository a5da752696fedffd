"""The background loop behind the synchronous client: calls from any thread, a clean stop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from aegis.sdk.sync import ClientClosedError
from aegis.sdk.sync.loop import LoopThread


def started() -> LoopThread:
    loop = LoopThread("aegis-sdk-test")
    loop.start()
    return loop


def test_runs_coroutines_on_its_own_thread_and_returns_their_result() -> None:
    loop = started()

    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    try:
        assert loop.call(where) == "aegis-sdk-test"
    finally:
        loop.stop()


def test_raises_what_the_coroutine_raised() -> None:
    loop = started()

    async def fail() -> None:
        raise KeyError("boom")

    try:
        with pytest.raises(KeyError, match="boom"):
            loop.call(fail)
    finally:
        loop.stop()


def test_stop_runs_the_last_coroutine_then_joins_the_thread() -> None:
    before = set(threading.enumerate())
    loop = started()
    ran: list[str] = []

    async def last() -> None:
        await asyncio.sleep(0)
        ran.append("last")

    loop.stop(last)

    assert ran == ["last"]
    assert set(threading.enumerate()) - before == set()
    loop.stop()  # a second stop does nothing


def test_a_call_past_its_timeout_is_cancelled() -> None:
    loop = started()
    cancelled = threading.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            loop.call(hang, timeout=0.05)
        assert cancelled.wait(5)
    finally:
        loop.stop()


def test_calls_after_stop_and_calls_cut_off_by_stop_raise_client_closed() -> None:
    loop = started()
    entered = threading.Event()

    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(loop.call, hang)
        assert entered.wait(5)
        loop.stop()
        with pytest.raises(ClientClosedError, match="closed while the call was running"):
            pending.result(5)

    with pytest.raises(ClientClosedError, match="not connected"):
        loop.call(lambda: asyncio.sleep(0))


def test_a_call_from_its_own_thread_is_refused_instead_of_deadlocking() -> None:
    loop = started()

    async def call_back() -> None:
        loop.call(lambda: asyncio.sleep(0))

    try:
        with pytest.raises(RuntimeError, match="its own background thread"):
            loop.call(call_back)
    finally:
        loop.stop()
