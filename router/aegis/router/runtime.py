"""The NATS side's life in the serving process: connect, start its parts, stop them.

``bootstrap`` builds the parts (``NatsParts``) and how they fit; this only runs
them, in the process that serves HTTP, since a connection made in Sanic's main
process would never be serviced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import structlog
from aegis.router.bus.connection import Connector, connected_server, shown_url
from aegis.router.bus.event_sink import OwnEvents
from aegis.router.bus.peers import PeerCheck
from aegis.router.bus.responder import NatsResponder
from aegis.router.heap import HeapKeeper
from aegis.router.leases.forwarding import Forwarder
from aegis.router.leases.membership_kv import KvMembership
from aegis.router.loop_lag import LoopLag
from aegis.router.metrics import RECONNECTS
from aegis.router.micro.control import MicroControl
from aegis.router.micro.discovery import MicroDiscovery
from aegis.router.registry.operations import EventSink, Registry
from aegis.router.registry.sweeper import Sweeper
from aegis.router.rest.event_feed import EventFeed
from aegis.router.settings import Settings
from aegis.router.store.port import InstanceStore
from aegis.wire.messages import ROUTER_STARTED_SUBJECT
from nats.aio.client import Client as NatsClient

log = structlog.get_logger("aegis.router")


@dataclass(frozen=True)
class NatsParts:
    """What runs on the router's NATS connection, built and wired by ``bootstrap``."""

    peers: PeerCheck  # routers that disagree refuse to share a bus
    registry: Registry
    store: InstanceStore
    feed: EventFeed  # every router's change events, for the HTTP stream
    events: Callable[[NatsClient, OwnEvents], EventSink]  # publishes this router's
    responder: NatsResponder
    micro: MicroControl  # answers $SRV.PING / INFO / STATS
    sweeper: Sweeper
    loop_lag: LoopLag  # the sweeper does not judge deadlines while behind
    heap: HeapKeeper  # short collection pauses at 100,000 instances
    members: KvMembership | None = None  # shared leases: routers split them
    forwarder: Forwarder | None = None  # with shared leases: heartbeats to their holder
    discovery: MicroDiscovery | None = None  # lists the bus's micro services


class RouterRuntime:
    """Starts and stops the router's NATS side, in the process that serves HTTP."""

    def __init__(self, settings: Settings, connect: Connector, parts: NatsParts) -> None:
        self.settings = settings
        self.parts = parts
        self.nc: NatsClient | None = None
        self._connect = connect
        self._answering = False  # the responder's subscriptions are live
        self._stopping = False
        self.feed: EventFeed | None = None  # once following NATS

    async def start(self) -> None:
        """Connect, open the store, answer requests, sweep."""
        parts, registry = self.parts, self.parts.registry
        self.nc = nc = await self._connect(
            self.settings,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        await parts.peers.start(nc)  # before anything is answered or written
        await parts.store.start(nc)
        await registry.load()
        await parts.feed.start(nc)  # other routers' events
        self.feed = parts.feed
        registry.set_event_sink(parts.events(nc, parts.feed.add_own))  # and ours
        if parts.members is not None:
            await parts.members.start(nc)
        if parts.forwarder is not None:
            parts.forwarder.start(nc)
        await parts.responder.start(nc)
        self._answering = True
        # Heartbeats reach this router from now on, not from its process start:
        # opening the store may have taken seconds (a stream electing its leader),
        # while other routers heard the contacts.
        registry.leases.hearing_from(registry.now().timestamp())
        await parts.micro.start(nc)
        if parts.discovery is not None:
            parts.discovery.start(nc)
        # Resolvers reload their view: a restarted router may hold what they never saw.
        started = {"router": registry.leases.membership.self_id}
        await nc.publish(ROUTER_STARTED_SUBJECT, msgpack.packb(started))
        parts.loop_lag.start()
        parts.heap.start()
        parts.sweeper.start()
        self._say_ready(nc)

    def _say_ready(self, nc: NatsClient) -> None:
        settings, registry = self.settings, self.parts.registry
        timings = registry.timings
        log.info(
            "router_ready",
            router=registry.leases.membership.self_id,
            nats_url=shown_url(settings),
            server=connected_server(nc),
            store=settings.store,
            http=f"{settings.http_host}:{settings.http_port}",
            heartbeat_interval=timings.heartbeat_interval,
            unhealthy_after=timings.unhealthy_after,
            offline_after=timings.offline_after,
            remove_after=timings.remove_after,
        )

    @property
    def ready(self) -> bool:
        """Connected to NATS with a registry and its responder running."""
        return (
            self.nc is not None and self.nc.is_connected and self._answering and not self._stopping
        )

    def not_ready_reason(self) -> str:
        """Why ``ready`` is false, for an operator."""
        if self._stopping:
            return "shutting down"
        if self.nc is None or not self._answering:
            return "starting: not connected to NATS yet"
        return "NATS connection lost; reconnecting"

    async def stop(self) -> None:
        """Stop sweeping and taking requests, finish those in flight, drain NATS."""
        self._stopping = True
        parts = self.parts
        if self.feed is not None:
            # First: Sanic waits for open HTTP streams before it stops.
            await self.feed.stop()
        await parts.sweeper.stop()
        await parts.loop_lag.stop()
        await parts.heap.stop()
        if parts.discovery is not None:
            await parts.discovery.stop()
        if parts.members is not None:
            # Goodbye first: the others take the leases over at once, while
            # this router still forwards the heartbeats that reach it.
            await parts.members.stop()
        await parts.micro.stop()
        await parts.responder.stop()
        await parts.peers.stop()
        parts.registry.set_event_sink(None)
        await parts.store.stop()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.drain()
        log.info("nats_drained")

    async def _on_disconnected(self) -> None:
        if not self._stopping:  # draining on shutdown disconnects too; that is no news
            log.warning("nats_disconnected")
            self.parts.sweeper.pause("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected", server=None if self.nc is None else connected_server(self.nc))
        RECONNECTS.inc()
        if self.feed is not None:
            self.feed.gap("nats_reconnected")  # other routers' events meanwhile are lost
        # Clients heartbeat within one interval, or re-register within two.
        self.parts.sweeper.resume(
            grace=2 * self.parts.registry.timings.heartbeat_interval, reason="nats_disconnected"
        )
