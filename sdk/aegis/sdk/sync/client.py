"""``ServiceClient`` for synchronous code: the async client, run in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from aegis.connect.connection import connect as connect_to_nats
from aegis.wire.messages import FilterValue, Instance

from ..client import CLOSE_TIMEOUT, DEFAULT_NATS_URL
from ..client import ServiceClient as AsyncServiceClient
from ..config import ClientConfig
from ..errors import RequestTimeoutError
from ..heartbeats import Key
from ..registrations import RegisteredInstance
from ..resolver import RESYNC_EVERY, Strategy
from ..resolver import Resolver as AsyncResolver
from ..serving import STOP_SIGNALS, block_until_signal
from ..transport import Connector, Monotonic, Rand, Sleep, WallClock, utc_now
from .loop import ClientClosedError, LoopThread
from .resolver import Resolver

T = TypeVar("T")

_numbers = itertools.count(1)  # names the background threads

# Past the longest a call can take with its config, the loop is wedged: say so.
SLACK = 5.0
NOT_CONNECTED = (
    "the client is not connected: use `with ServiceClient(...) as client:` "
    "or call connect() first (and not after close())"
)


class ServiceClient:
    """``aegis.sdk.ServiceClient`` for code without an event loop: Flask, Django, scripts.

    Use as ``with ServiceClient(nats_url=...) as client:``, or call
    ``connect()`` and ``close()``. Each method blocks until the router answers
    and takes the same arguments, means the same and raises the same errors
    as its async namesake. Behind it, one daemon thread runs an asyncio loop
    with one async client, whose heartbeats keep running between calls.
    ``close()`` (leaving the ``with`` block, even on an exception)
    deregisters the instances still ours, ends that loop and joins its
    thread. Any thread may call the client at the same time as others.

    Calls on a client that is not connected (never, or no longer) raise
    ``ClientClosedError``. The keyword-only ``connect``, ``sleep``, ``clock``,
    ``monotonic`` and ``rand`` are the async client's: tests pass fakes.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] = DEFAULT_NATS_URL,
        config: ClientConfig | None = None,
        *,
        name: str = "aegis-sdk",
        connect: Connector = connect_to_nats,
        sleep: Sleep = asyncio.sleep,
        clock: WallClock = utc_now,
        monotonic: Monotonic = time.monotonic,
        rand: Rand = random.random,
    ) -> None:
        self._client = AsyncServiceClient(
            nats_url,
            config,
            name=name,
            connect=connect,
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
            rand=rand,
        )
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()  # one connect or close at a time

    @property
    def nats_url(self) -> str | Sequence[str]:
        """The NATS server(s) this client connects to."""
        return self._client.nats_url

    @property
    def config(self) -> ClientConfig:
        """Timeouts, retries, breaker and credentials."""
        return self._client.config

    @property
    def session_id(self) -> str:
        """The random session every instance this client registers is tied to."""
        return self._client.session_id

    @property
    def connected(self) -> bool:
        """True between a successful ``connect()`` and ``close()``."""
        return self._loop is not None and self._loop.running

    @property
    def budget(self) -> float:
        """Seconds one call may take before it fails with ``RequestTimeoutError``: every
        retry's connect and reply timeouts and backoff, and some slack."""
        cfg = self.config
        tries = cfg.retries + 1
        return tries * (cfg.connect_timeout + cfg.timeout) + cfg.retries * cfg.backoff_max + SLACK

    @property
    def instances(self) -> Mapping[Key, RegisteredInstance]:
        """A copy of this client's instances by ``(service_name, instance_id)``, with their
        state (each ``RegisteredInstance`` is the live record the heartbeats update)."""
        if not self.connected:
            return {}

        async def copy() -> dict[Key, RegisteredInstance]:
            return dict(self._client.instances)  # made on the loop: never mid-change

        return self._call(copy)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Start the background thread and connect to NATS, as the async ``connect``.

        Does nothing if connected. On failure (``ServiceUnavailableError``) the
        thread is stopped again and ``connect()`` may be retried.
        """
        with self._lock:
            if self.connected:
                return
            loop = LoopThread(name=f"aegis-sdk-{next(_numbers)}")  # no session id: it is secret
            loop.start()
            try:
                loop.call(self._client.connect, self.budget)
            except BaseException:
                loop.stop(self._client.close, self.budget)
                raise
            self._loop = loop

    def close(self) -> None:
        """Stop heartbeats, deregister every instance still ours, close NATS, and end the
        background thread (joined before this returns). Closing twice does nothing."""
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is not None:
                # Deregistrations get CLOSE_TIMEOUT each, in parallel; then NATS drains.
                with _stuck_as_timeout(CLOSE_TIMEOUT + self.budget):
                    loop.stop(self._client.close, CLOSE_TIMEOUT + self.budget)

    def serve_forever(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> signal.Signals:
        """Block until SIGTERM or SIGINT (Ctrl-C), then deregister every instance of this
        client; returns the signal that came. See the async ``serve_forever``.

        Heartbeats run in the background thread meanwhile. Call it from the main
        thread (Python delivers signals there only; elsewhere ``RuntimeError``);
        a WSGI server's worker serves in its own way: deregister with ``close()``
        when it stops.
        """
        if not self.connected:
            raise ClientClosedError(NOT_CONNECTED)
        received = block_until_signal(signals)
        self._call(lambda: self._client._stop_serving(received), extra=CLOSE_TIMEOUT)
        return received

    def deregister_all(self) -> None:
        """Stop every heartbeat and take every instance still ours OFFLINE; the connection
        stays open."""
        self._call(self._client.deregister_all, extra=CLOSE_TIMEOUT)

    def register(
        self,
        service_name: str,
        instance_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        wait_if_taken: float = 0.0,
    ) -> Instance:
        """Register one instance and keep it alive in the background; see the async
        ``register`` (``wait_if_taken``, and the errors it raises)."""
        return self._call(
            lambda: self._client.register(
                service_name, instance_id, metadata, wait_if_taken=wait_if_taken
            ),
            extra=wait_if_taken,
        )

    def deregister(self, service_name: str, instance_id: str) -> Instance | None:
        """Stop heartbeating and take the instance OFFLINE; None if the router did not know it."""
        return self._call(lambda: self._client.deregister(service_name, instance_id))

    def discover(self, service_name: str, status: str = "ONLINE") -> list[Instance]:
        """Instances of a service in ``status`` (ONLINE, UNHEALTHY, OFFLINE or ANY)."""
        return self._call(lambda: self._client.discover(service_name, status))

    def resolver(
        self,
        service_name: str,
        *,
        where: Mapping[str, FilterValue] | None = None,
        strategy: Strategy = "round_robin",
        resync_every: float = RESYNC_EVERY,
    ) -> Resolver:
        """A local, always-current view of ``service_name``'s ONLINE instances matching
        ``where``, kept by the background thread; see the async ``resolver``.

        Returns once the first snapshot is loaded; ``pick()`` then reads memory only.
        """

        async def start() -> AsyncResolver:
            return await self._client.resolver(
                service_name, where=where, strategy=strategy, resync_every=resync_every
            )

        return Resolver(self._call(start), self._call)

    def _call(self, factory: Callable[[], Awaitable[T]], *, extra: float = 0.0) -> T:
        """Run one of the async client's coroutines on the background loop, bounded."""
        loop = self._loop
        if loop is None:
            raise ClientClosedError(NOT_CONNECTED)
        with _stuck_as_timeout(self.budget + extra):
            return loop.call(factory, self.budget + extra)


@contextlib.contextmanager
def _stuck_as_timeout(seconds: float) -> Iterator[None]:
    """A call past its bound is the SDK's ``RequestTimeoutError``, as for the async client."""
    try:
        yield
    except TimeoutError as exc:
        raise RequestTimeoutError(
            f"no result within {seconds:.1f}s (the background loop is stuck?)", code="TIMEOUT"
        ) from exc
