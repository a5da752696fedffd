"""One asyncio event loop in one background daemon thread, taking coroutines from any thread.

``LoopThread.call`` runs a coroutine on that loop and blocks the calling
thread for its result; every call goes through the one loop, so calls from
several threads never race each other. ``stop`` refuses new calls, runs a
last coroutine (the async client's ``close``), ends the loop and joins the
thread: nothing is left running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import ServiceUnavailableError
from ..serving import STOP_SIGNALS

T = TypeVar("T")


class ClientClosedError(ServiceUnavailableError):
    """The synchronous client is not connected: never, or no longer (503, ``NOT_CONNECTED``,
    as the async client says it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="NOT_CONNECTED")


class LoopThread:
    """An event loop in a daemon thread, from ``start`` to ``stop``; ``call`` it from others."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # None: not taking calls
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        """True from ``start`` until ``stop`` begins."""
        return self._loop is not None

    def start(self) -> None:
        """Start the thread and return once its loop runs."""
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        # The process's stop signals are the main thread's (serve_forever waits there):
        # blocked here, and so in every thread this one starts (they inherit the mask),
        # the kernel hands them to a thread that acts on them at once.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        # asyncio.run cancels what is left, closes async generators and the loop.
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stopping.wait()

    def call(self, factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``factory()`` on the loop and return its result (or raise what it raised).

        ``TimeoutError`` after ``timeout`` seconds (the coroutine is then
        cancelled), ``ClientClosedError`` if the loop is not taking calls or
        stops meanwhile, ``RuntimeError`` if called from the loop's own thread
        (it would wait for itself forever).
        """
        self._refuse_own_thread()
        with self._lock:  # so that stop() cannot end the loop between check and submit
            if self._loop is None:
                raise ClientClosedError("the client is not connected (closed, or never connected)")
            future = asyncio.run_coroutine_threadsafe(_run(factory), self._loop)
        return _wait(future, timeout)

    def stop(
        self, last: Callable[[], Awaitable[object]] | None = None, timeout: float | None = None
    ) -> None:
        """Refuse new calls, run ``last`` on the loop, end the loop and join the thread.

        Calls still in flight when the loop ends are cancelled (their callers
        get ``ClientClosedError``). Raises what ``last`` raised, after the thread
        is gone. Stopping twice, or before ``start``, does nothing.
        """
        self._refuse_own_thread()
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if last is not None:
                _wait(asyncio.run_coroutine_threadsafe(_run(last), loop), timeout)
        finally:
            assert self._stopping is not None
            assert self._thread is not None
            loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()

    def _refuse_own_thread(self) -> None:
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(
                "the synchronous client was called from its own background thread "
                "(e.g. from an on_change callback); it would wait for itself forever"
            )


async def _run(factory: Callable[[], Awaitable[T]]) -> T:
    # The coroutine is made on the loop: none is left un-awaited if submitting fails.
    return await factory()


def _wait(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.CancelledError:
        raise ClientClosedError("the client was closed while the call was running") from None
    except BaseException:
        future.cancel()  # a timeout, or Ctrl-C in the caller: the call must not run on
        raise
