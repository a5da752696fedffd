"""``Resolver`` for synchronous code: the async resolver's view, read from any thread."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from aegis.wire.messages import FilterValue, Instance

from ..resolver import ChangeCallback, NoHealthyInstanceError
from ..resolver import Resolver as AsyncResolver

T = TypeVar("T")


class Caller(Protocol):
    """Runs a coroutine on the client's background loop and waits for its result."""

    def __call__(self, factory: Callable[[], Awaitable[T]], /) -> T:
        """The coroutine's result, or what it raised."""


class Resolver:
    """A local, always-current view of one service's healthy instances, kept by the
    client's background thread; ``pick()`` and ``instances()`` read it from memory.

    Made by ``ServiceClient.resolver``; it means what ``aegis.sdk.Resolver``
    means. ``close()`` (or closing the client) stops it.
    """

    def __init__(self, resolver: AsyncResolver, call: Caller) -> None:
        self._resolver = resolver
        self._call = call

    @property
    def service_name(self) -> str:
        """The service this view follows."""
        return self._resolver.service_name

    @property
    def where(self) -> dict[str, FilterValue]:
        """The metadata every instance in the view matches."""
        return dict(self._resolver.where)

    @property
    def stale(self) -> bool:
        """True while the router cannot be reached: the view is the last one known."""
        return self._resolver.stale

    @property
    def age(self) -> float | None:
        """Seconds since the view was last known current."""
        return self._resolver.age

    def instances(self) -> list[Instance]:
        """The ONLINE instances matching ``where``, sorted by instance id."""
        return self._resolver.instances()  # a copy of a list the loop replaces, never edits

    def pick(self) -> Instance:
        """One healthy instance, chosen by the strategy, with no round trip;
        ``NoHealthyInstanceError`` (saying why) if there is none."""
        if self._resolver.instances():
            with contextlib.suppress(NoHealthyInstanceError):  # emptied meanwhile
                return self._resolver.pick()

        # Saying why reads the whole view: on the loop, where it is never mid-change.
        async def pick_on_loop() -> Instance:
            return self._resolver.pick()

        return self._call(pick_on_loop)

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(instances)`` after each change of the view.

        It runs in the client's background thread: keep it short, and do not
        call the client from it (that raises ``RuntimeError``).
        """

        async def add() -> None:
            self._resolver.on_change(callback)

        self._call(add)

    def close(self) -> None:
        """Stop following the service; the last view stays readable."""
        self._call(self._resolver.close)
