"""Fault-injecting TCP proxies: every link of the chaos cluster goes through one, and
end-to-end tests cut a single router from NATS with one (tests/e2e/test_leases.py).

A :class:`Link` listens on a free loopback port and relays each connection to
its upstream port (a node's client or cluster port). Its state says what
happens to the traffic:

- up: relayed as is;
- cut: existing connections are reset (RST) and new ones are reset on accept;
- latency: each chunk is delayed by ``latency`` seconds, in order, both ways;
- drop: data in one direction (``forward``: from the dialer to the upstream,
  ``reverse``: back) is silently discarded while the connection stays open.

All proxies run on one event loop in a thread of their own (:class:`ProxyHub`),
so they keep relaying while the harness's own loop blocks (say, in
``Cluster.stop``, while routers drain through them).

Cluster routes need one more thing. A link in front of node N's cluster port
carries the routes the other nodes dial to N; the routes N dials go through
the other nodes' links. To cut N's routes both must go, so route links read
the dialer's name from the route protocol's first ``INFO`` (``server_name``)
and :meth:`ProxyHub.block_dialer` resets the connections N dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from .stalls import LoopStalls

Direction = Literal["forward", "reverse"]
T = TypeVar("T")

# The dialer's INFO names it; give up looking after this many bytes or seconds.
SNIFF_LIMIT = 64 * 1024
SNIFF_TIMEOUT = 2.0
SERVER_NAME = re.compile(rb'"server_name":\s*("(?:[^"\\]|\\.)*")')


@dataclass
class Link:
    """One proxied link: its name, where it listens, where it relays, and its state.

    ``node`` is the node it leads to; ``owner`` the client or router that uses it
    (``route`` for a node's cluster port). State fields are changed only through
    the hub, on its loop.
    """

    name: str
    node: str
    owner: str
    upstream: int
    sniff: bool = False
    port: int = 0
    cut: bool = False
    latency: float = 0.0
    drop: Direction | None = None
    pipes: set[Pipe] = field(default_factory=set, repr=False)
    server: asyncio.Server | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` it listens on."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Its NATS URL."""
        return f"nats://{self.address}"


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a reset, not a clean close."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class _Side(asyncio.Protocol):
    """One end of a pipe: the accepted connection, or the one to the upstream."""

    def __init__(self, pipe: Pipe, direction: Direction) -> None:
        self.pipe = pipe
        self.direction = direction  # of the data it receives
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pipe.relay(self.direction, data)

    def eof_received(self) -> bool:
        return False  # NATS never half-closes: treat it as the end

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.lost(self)

    # Backpressure: a side that cannot write fast enough pauses the other's reading.
    def pause_writing(self) -> None:
        other = self.pipe.other(self)
        if other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.pipe.other(self)
        if other.transport is not None and not other.transport.is_closing():
            other.transport.resume_reading()


class Pipe:
    """One relayed connection: the dialer's side and the upstream side."""

    def __init__(self, hub: ProxyHub, link: Link) -> None:
        self.hub = hub
        self.link = link
        self.inbound = _Side(self, "forward")
        self.outbound = _Side(self, "reverse")
        self.peer: str | None = None  # the dialing node, on a route link
        self._sniffing = link.sniff
        self._sniffed = bytearray()
        self._queues: dict[Direction, deque[tuple[float, bytes]]] = {
            "forward": deque(),
            "reverse": deque(),
        }
        self._timers: dict[Direction, asyncio.TimerHandle | None] = {
            "forward": None,
            "reverse": None,
        }
        self._closing = False

    def other(self, side: _Side) -> _Side:
        """The side opposite ``side``."""
        return self.outbound if side is self.inbound else self.inbound

    def _target(self, direction: Direction) -> _Side:
        return self.outbound if direction == "forward" else self.inbound

    async def open(self) -> None:
        """Connect upstream (the accepted side waits meanwhile); reset it if that fails."""
        assert self.inbound.transport is not None
        self.inbound.transport.pause_reading()
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.outbound, "127.0.0.1", self.link.upstream)
        except OSError:
            self.reset()
            return
        if self.link.cut or self._closing:  # cut, or the dialer left, meanwhile
            self.reset()
            return
        self.inbound.transport.resume_reading()
        if self._sniffing:
            loop.call_later(SNIFF_TIMEOUT, self._sniff_done)

    def relay(self, direction: Direction, data: bytes) -> None:
        """Pass ``data`` on as the link's state says."""
        if self.link.drop == direction:
            return
        if direction == "forward" and self._sniffing:
            self._sniffed += data
            match = SERVER_NAME.search(self._sniffed)
            if match:
                with contextlib.suppress(ValueError):
                    self.peer = str(json.loads(match.group(1)))
            if match or len(self._sniffed) > SNIFF_LIMIT:
                self._sniff_done()
            return
        self._send(direction, data)

    def _sniff_done(self) -> None:
        if not self._sniffing:
            return
        self._sniffing = False
        if self.peer is not None and self.peer in self.hub.blocked_dialers:
            self.reset()
            return
        data, self._sniffed = bytes(self._sniffed), bytearray()
        if data:
            self._send("forward", data)

    def _send(self, direction: Direction, data: bytes) -> None:
        queue = self._queues[direction]
        if self.link.latency <= 0 and not queue:
            self._write(direction, data)
            return
        loop = self.hub.loop
        # Never before a chunk queued earlier: the stream's order is kept.
        due = loop.time() + self.link.latency
        if queue:
            due = max(due, queue[-1][0])
        queue.append((due, data))
        if self._timers[direction] is None:
            self._timers[direction] = loop.call_at(queue[0][0], self._pump, direction)

    def _pump(self, direction: Direction) -> None:
        self._timers[direction] = None
        queue = self._queues[direction]
        now = self.hub.loop.time()
        while queue and queue[0][0] <= now:
            self._write(direction, queue.popleft()[1])
        if queue:
            self._timers[direction] = self.hub.loop.call_at(queue[0][0], self._pump, direction)
        elif self._closing:
            self._close_both()

    def _write(self, direction: Direction, data: bytes) -> None:
        transport = self._target(direction).transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def lost(self, side: _Side) -> None:
        """One side closed: close the other once what is queued for it is written."""
        self._closing = True
        toward_other: Direction = "forward" if side is self.inbound else "reverse"
        if not self._queues[toward_other]:
            self._close_both()

    def _close_both(self) -> None:
        for side in (self.inbound, self.outbound):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self._forget()

    def reset(self) -> None:
        """Reset both connections, dropping whatever is queued."""
        for queue in self._queues.values():
            queue.clear()
        _reset(self.inbound.transport)
        _reset(self.outbound.transport)
        self._forget()

    def _forget(self) -> None:
        for direction, timer in self._timers.items():
            if timer is not None:
                timer.cancel()
                self._timers[direction] = None
        self.link.pipes.discard(self)

    def upstream_port(self) -> int | None:
        """The local port of the upstream connection (what the node sees as its peer)."""
        transport = self.outbound.transport
        if transport is None:
            return None
        name = transport.get_extra_info("sockname")
        return int(name[1]) if name else None


class ProxyHub:
    """Every link, served by one event loop in a daemon thread.

    The methods that change links are called from any thread (the harness's
    loop, or a worker thread) and return once the change is done.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[str, Link] = {}
        self._lock = threading.Lock()  # links are added from any thread, read on the loop
        self.blocked_dialers: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # pipes opening (kept from the GC)
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxies", daemon=True)
        self._thread.start()
        # The hub's loop relays every byte: when it runs late, so does every link.
        self.stalls = LoopStalls("proxies")
        self._stalls = asyncio.run_coroutine_threadsafe(self.stalls.run(), self.loop)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the hub's loop and return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10.0)

    def add(self, name: str, *, node: str, owner: str, upstream: int, sniff: bool = False) -> Link:
        """The link called ``name``, listening from now on (made once; later calls return it)."""
        with self._lock:
            if name in self.links:
                return self.links[name]
        link = Link(name, node, owner, upstream, sniff)

        async def listen() -> None:
            def accepted() -> asyncio.Protocol:
                pipe = Pipe(self, link)
                link.pipes.add(pipe)
                return _Accepted(pipe)

            link.server = await self.loop.create_server(accepted, "127.0.0.1", 0)
            link.port = int(link.server.sockets[0].getsockname()[1])

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10.0)
        with self._lock:
            self.links[name] = link
        return link

    def all(self) -> list[Link]:
        """Every link so far."""
        with self._lock:
            return list(self.links.values())

    def select(self, *, node: str | None = None, owner: str | None = None) -> list[Link]:
        """The links leading to ``node`` and/or used by ``owner``."""
        return [
            link
            for link in self.all()
            if (node is None or link.node == node) and (owner is None or link.owner == owner)
        ]

    def _each(self, links: Iterable[Link], change: Callable[[Link], None]) -> None:
        """Apply ``change`` to each of ``links`` on the hub's loop."""
        chosen = list(links)

        def apply() -> None:
            for link in chosen:
                change(link)

        self._call(apply)

    def cut(self, links: Iterable[Link]) -> None:
        """Cut ``links``: reset their connections and every new one."""

        def cut(link: Link) -> None:
            link.cut = True
            for pipe in list(link.pipes):
                pipe.reset()

        self._each(links, cut)

    def delay(self, links: Iterable[Link], seconds: float) -> None:
        """Delay each chunk on ``links`` by ``seconds``, both ways."""
        self._each(links, lambda link: setattr(link, "latency", seconds))

    def drop(self, links: Iterable[Link], direction: Direction) -> None:
        """Discard the data going ``direction`` on ``links``; connections stay open."""
        self._each(links, lambda link: setattr(link, "drop", direction))

    def restore(self, links: Iterable[Link]) -> None:
        """``links`` up again (chunks already delayed still arrive, in order)."""
        self._each(links, _restore)

    def block_dialer(self, node: str) -> None:
        """Reset every route ``node`` dialled, and every one it dials until unblocked."""

        def apply() -> None:
            self.blocked_dialers.add(node)
            for link in self.all():
                for pipe in list(link.pipes):
                    if pipe.peer == node:
                        pipe.reset()

        self._call(apply)

    def unblock_dialer(self, node: str) -> None:
        """Let ``node`` dial routes again."""
        self._call(lambda: self.blocked_dialers.discard(node))

    def upstream_ports(self, node: str) -> set[int]:
        """Local ports of the connections the route link of ``node`` holds to it."""
        return self._call(
            lambda: {
                port
                for link in self.select(node=node, owner="route")
                for pipe in link.pipes
                if (port := pipe.upstream_port()) is not None
            }
        )

    def close(self) -> None:
        """Stop listening, reset every connection, stop the loop's thread."""

        async def shut() -> None:
            self._stalls.cancel()
            for link in self.all():
                if link.server is not None:
                    link.server.close()
                for pipe in list(link.pipes):
                    pipe.reset()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)


def _restore(link: Link) -> None:
    link.cut, link.latency, link.drop = False, 0.0, None


class _Accepted(_Side):
    """The dialer's side: refused (reset) on a cut link, else the pipe opens upstream."""

    def __init__(self, pipe: Pipe) -> None:
        super().__init__(pipe, "forward")
        pipe.inbound = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.pipe.link.cut:
            self.pipe.reset()
            return
        task = asyncio.get_running_loop().create_task(self.pipe.open())
        self.pipe.hub.tasks.add(task)
        task.add_done_callback(self.pipe.hub.tasks.discard)
