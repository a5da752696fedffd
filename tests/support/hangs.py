"""Print every asyncio task's stack when a test runs close to its timeout.

pytest-timeout prints the threads' stacks, and a hung async test shows only its
event loop idle in ``select``: which task waits on which is what finds the hang.
A watchdog thread asks each running loop to print its tasks ``HANG_NOTICE``
seconds before the timeout, so the CI log holds them. Armed once per test, over
its setup, call and teardown, as pytest-timeout times it.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
from collections.abc import Generator

import pytest

HANG_NOTICE = 10.0  # seconds before the timeout


def print_tasks() -> None:
    """Print every task of the running loop with its stack (call in the loop)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=out)
        task.print_stack(file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


class HangWatch:
    """A daemon thread that dumps the running loops' tasks of a test past its notice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: float | None = None
        self._test = ""
        threading.Thread(target=self._run, name="aegis-hang-watch", daemon=True).start()

    def arm(self, test: str, timeout: float) -> None:
        """A test phase begins; it has ``timeout`` seconds."""
        with self._lock:
            self._test, self._due = test, time.monotonic() + max(timeout - HANG_NOTICE, 1.0)

    def disarm(self) -> None:
        """The test phase ended in time."""
        with self._lock:
            self._due = None

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                if self._due is None or time.monotonic() < self._due:
                    continue
                test, self._due = self._test, None
            sys.stderr.write(f"\n=== {test} is close to its timeout; its asyncio tasks:\n")
            for obj in gc.get_objects():
                if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
                    obj.call_soon_threadsafe(print_tasks)


_watch: HangWatch | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Arm the hang watch for the whole test (a plugin of tests/conftest.py)."""
    global _watch
    marker = item.get_closest_marker("timeout")
    given = item.config.getoption("timeout", None) or item.config.getini("timeout") or 0
    timeout = float(marker.args[0]) if marker and marker.args else float(given)
    if timeout <= 0:
        return (yield)
    if _watch is None:
        _watch = HangWatch()
    _watch.arm(item.nodeid, timeout)
    try:
        return (yield)
    finally:
        _watch.disarm()
