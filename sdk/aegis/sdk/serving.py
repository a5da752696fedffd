"""Waiting until the process is told to stop: SIGTERM (systemd, Docker, Kubernetes) or
SIGINT (Ctrl-C).

``ServiceClient.serve_forever`` waits here, then deregisters. Python's own
defaults stop a process on these signals without running any cleanup
(SIGTERM) or with an exception that code may swallow or turn into a traceback
(SIGINT), so a service left ONLINE in the registry until it expired. As
aiohttp's ``run_app`` does, both signals are taken for the wait only: the
handlers that were there before are put back afterwards, so a second Ctrl-C
during the deregistration stops the process as Ctrl-C did before.

Only the main thread receives signals, in Python: the waits raise
``RuntimeError`` elsewhere, and a service whose main thread is busy with
something else waits for its own stop condition, then calls
``deregister_all()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

OFF_MAIN_THREAD = (
    "serve_forever() waits for SIGTERM and SIGINT, which Python delivers to the main "
    "thread only: call it from the main thread, or wait for your own stop condition and "
    "call deregister_all() (or leave the client's `with` block)"
)

_Handler = Callable[[int, FrameType | None], object] | int | None


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(OFF_MAIN_THREAD)


def _put_back(sig: signal.Signals, handler: _Handler) -> None:
    # getsignal() gives None for a handler not set from Python: the default then.
    signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _on_signals(
    loop: asyncio.AbstractEventLoop,
    signals: Iterable[signal.Signals],
    callback: Callable[[signal.Signals], None],
) -> Iterator[None]:
    """``callback(sig)`` on the loop for each of ``signals`` until the block ends."""
    previous: dict[signal.Signals, _Handler] = {}
    through_loop: set[signal.Signals] = set()
    try:
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            try:
                # The loop's own way (a wakeup fd) wakes it whichever thread the kernel
                # chose to interrupt.
                loop.add_signal_handler(sig, callback, sig)
                through_loop.add(sig)
            except NotImplementedError:  # Windows' event loops

                def forward(number: int, _frame: FrameType | None) -> None:
                    loop.call_soon_threadsafe(callback, signal.Signals(number))

                signal.signal(sig, forward)
        yield
    finally:
        for sig, handler in previous.items():
            if sig in through_loop:
                loop.remove_signal_handler(sig)
            _put_back(sig, handler)


async def wait_for_signal(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> signal.Signals:
    """Wait until one of ``signals`` arrives and return it; the handlers before are put back."""
    _require_main_thread()
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def arrived(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    with _on_signals(loop, signals, arrived):
        return await received


class _Arrived(BaseException):
    """Raised by the signal handler into the waiting main thread (as KeyboardInterrupt is)."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.sig = sig


def block_until_signal(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> signal.Signals:
    """Block the main thread until one of ``signals`` arrives and return it; the handlers
    before are put back."""
    _require_main_thread()
    arrived: list[signal.Signals] = []

    def handler(number: int, _frame: FrameType | None) -> None:
        if not arrived:  # a second one before the handlers are put back changes nothing
            arrived.append(signal.Signals(number))
            raise _Arrived(arrived[0])

    previous: dict[signal.Signals, _Handler] = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
        while True:
            # The handler raises out of the sleep; short sleeps only bound the delay
            # should the kernel hand the signal to another thread.
            time.sleep(1.0)
    except _Arrived as stop:
        return stop.sig
    finally:
        for sig, before in previous.items():
            _put_back(sig, before)
