"""What runs in the serving process: NATS connection, store, registry, responder, sweeper."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgpack
import structlog
from aegis.router.bus.connection import Connector, connected_server, shown_url
from aegis.router.bus.endpoints import endpoints
from aegis.router.bus.event_sink import OwnEvents
from aegis.router.bus.responder import QUEUE_GROUP, NatsResponder
from aegis.router.heap import HeapKeeper
from aegis.router.leases.forwarding import Forwarder
from aegis.router.leases.membership_kv import KvMembership
from aegis.router.loop_lag import LoopLag
from aegis.router.metrics import RECONNECTS
from aegis.router.micro.control import MicroControl
from aegis.router.micro.discovery import MicroDiscovery
from aegis.router.registry.operations import EventSink, Registry
from aegis.router.registry.sweeper import Sweeper, tick_for
from aegis.router.rest.event_feed import EventFeed
from aegis.router.settings import Settings
from aegis.router.store.port import InstanceStore
from aegis.wire.messages import REGISTER_SUBJECT, ROUTER_STARTED_SUBJECT
from nats.aio.client import Client as NatsClient

log = structlog.get_logger("aegis.router")


class RouterRuntime:
    """Starts and stops the router's NATS side, in the process that serves HTTP."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: InstanceStore,
        connect: Connector,
        events: Callable[[NatsClient, OwnEvents], EventSink],
        members: KvMembership | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.nc: NatsClient | None = None
        self._store = store
        self._connect = connect
        self._events = events
        self._members = members
        self._responder: NatsResponder | None = None
        self._micro: MicroControl | None = None  # answers $SRV.PING / INFO / STATS
        self._discovery: MicroDiscovery | None = None  # lists the bus's micro services
        self._sweeper: Sweeper | None = None
        self._loop_lag = LoopLag()  # the sweeper does not judge deadlines while behind
        self._heap = HeapKeeper()  # short collection pauses at 100,000 instances
        self._stopping = False
        self.feed: EventFeed | None = None  # change events for the HTTP stream

    async def start(self) -> None:
        """Connect, open the store, answer requests, sweep."""
        settings, registry = self.settings, self.registry
        self.nc = await self._connect(
            settings,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        await self._store.start(self.nc)
        await registry.load()
        feed = EventFeed(registry.leases.membership.self_id, max_streams=settings.max_event_streams)
        await feed.start(self.nc)  # other routers' events
        self.feed = feed
        registry.set_event_sink(self._events(self.nc, feed.add_own))  # and ours
        forward = None
        if self._members is not None:
            await self._members.start(self.nc)
            forward = Forwarder(self.nc).heartbeat
        self._responder = NatsResponder(
            endpoints(
                registry,
                max_request_bytes=settings.max_request_bytes,
                max_metadata_bytes=settings.max_metadata_bytes,
                forward=forward,
            ),
            max_in_flight=settings.max_in_flight,
            max_pending=settings.max_pending,
            lanes={REGISTER_SUBJECT: ("registration", settings.register_lane)},
        )
        await self._responder.start(self.nc)
        # Heartbeats reach this router from now on, not from its process start:
        # opening the store may have taken seconds (a stream electing its leader),
        # while other routers heard the contacts.
        registry.leases.hearing_from(registry.now().timestamp())
        self._micro = MicroControl(
            registry.leases.membership.self_id,
            self._responder.stats,
            queue_group=QUEUE_GROUP,
            metadata={"store": settings.store},
        )
        await self._micro.start(self.nc)
        if settings.micro_discovery:
            self._discovery = MicroDiscovery(
                registry,
                period=settings.micro_poll,
                max_metadata_bytes=settings.max_metadata_bytes,
            )
            self._discovery.start(self.nc)
        # Resolvers reload their view: a restarted router may hold what they never saw.
        started = {"router": registry.leases.membership.self_id}
        await self.nc.publish(ROUTER_STARTED_SUBJECT, msgpack.packb(started))
        membership = registry.leases.membership
        self._sweeper = Sweeper(
            registry,
            tick_for(registry.timings.unhealthy_after),
            # Shared leases: a router that cannot hear itself may have been counted
            # gone, and cannot be sure it hears its instances either.
            hearing=(lambda: membership.hearing(time.time())) if self._members else None,
            hearing_grace=2 * registry.timings.heartbeat_interval,
            lag=self._loop_lag.lag,
        )
        self._loop_lag.start()
        self._heap.start()
        self._sweeper.start()
        timings = registry.timings
        log.info(
            "router_ready",
            router=registry.leases.membership.self_id,
            nats_url=shown_url(settings),
            server=connected_server(self.nc),
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
            self.nc is not None
            and self.nc.is_connected
            and self._responder is not None
            and not self._stopping
        )

    def not_ready_reason(self) -> str:
        """Why ``ready`` is false, for an operator."""
        if self._stopping:
            return "shutting down"
        if self.nc is None or self._responder is None:
            return "starting: not connected to NATS yet"
        return "NATS connection lost; reconnecting"

    async def stop(self) -> None:
        """Stop sweeping and taking requests, finish those in flight, drain NATS."""
        self._stopping = True
        if self.feed is not None:
            # First: Sanic waits for open HTTP streams before it stops.
            await self.feed.stop()
        if self._sweeper is not None:
            await self._sweeper.stop()
        await self._loop_lag.stop()
        await self._heap.stop()
        if self._discovery is not None:
            await self._discovery.stop()
        if self._members is not None:
            # Goodbye first: the others take the leases over at once, while
            # this router still forwards the heartbeats that reach it.
            await self._members.stop()
        if self._micro is not None:
            await self._micro.stop()
        if self._responder is not None:
            await self._responder.stop()
        self.registry.set_event_sink(None)
        await self._store.stop()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.drain()
        log.info("nats_drained")

    async def _on_disconnected(self) -> None:
        if not self._stopping:  # draining on shutdown disconnects too; that is no news
            log.warning("nats_disconnected")
            if self._sweeper is not None:
                self._sweeper.pause("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected", server=None if self.nc is None else connected_server(self.nc))
        RECONNECTS.inc()
        if self.feed is not None:
            self.feed.gap("nats_reconnected")  # other routers' events meanwhile are lost
        if self._sweeper is not None:
            # Clients heartbeat within one interval, or re-register within two.
            self._sweeper.resume(
                grace=2 * self.registry.timings.heartbeat_interval, reason="nats_disconnected"
            )
