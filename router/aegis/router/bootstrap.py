"""The composition root: the one function that knows how the router's parts fit together.

The CLI, Sanic's worker processes and the tests all build the router here,
passing fakes where they want them; nothing else in the code wires parts.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime

from aegis.router.bus.connection import Connector, connect_router
from aegis.router.bus.endpoints import endpoints
from aegis.router.bus.event_sink import NatsEventSink, OwnEvents
from aegis.router.bus.peers import PeerCheck, Shape
from aegis.router.bus.responder import QUEUE_GROUP, NatsResponder
from aegis.router.heap import HeapKeeper
from aegis.router.leases.contacts import Leases
from aegis.router.leases.forwarding import Forwarder
from aegis.router.leases.membership import MEMBER_TTL, Membership
from aegis.router.leases.membership_kv import KvMembership, members_bucket
from aegis.router.loop_lag import LoopLag
from aegis.router.micro.control import MicroControl
from aegis.router.micro.discovery import MicroDiscovery
from aegis.router.registry.operations import EventSink, InstanceLimits, Registry, utc_now
from aegis.router.registry.sweeper import Sweeper, tick_for
from aegis.router.rest.app import build_app
from aegis.router.rest.event_feed import EventFeed
from aegis.router.runtime import NatsParts, RouterRuntime
from aegis.router.settings import Settings
from aegis.router.store.jetstream import JetStreamStore
from aegis.router.store.port import InstanceStore, MemoryStore
from aegis.wire.messages import (
    REGISTER,
    REGISTER_SUBJECT,
    router_forward_subject,
    service_subject,
)
from nats.aio.client import Client as NatsClient
from sanic import Sanic


def default_store(settings: Settings) -> InstanceStore:
    """The store ``settings.store`` names: the replicated bucket, or this process's memory."""
    if settings.store == "memory":
        return MemoryStore()
    return JetStreamStore(settings.kv_bucket, settings.kv_replicas)


def router_id(settings: Settings) -> str:
    """This process's name among routers: configured (plus the pid for a worker), or random."""
    if settings.router_id is None:
        return secrets.token_hex(6)
    if settings.workers > 1:
        return f"{settings.router_id}-{os.getpid()}"
    return settings.router_id


def bootstrap(
    settings: Settings,
    *,
    store: InstanceStore | None = None,
    nats: Connector | None = connect_router,
    events: Callable[[NatsClient, OwnEvents], EventSink] = NatsEventSink,
    clock: Callable[[], datetime] = utc_now,
) -> Sanic:  # type: ignore[type-arg]
    """A router app: the registry (``app.ctx.registry``, its one handle) behind the REST
    API, and, unless ``nats`` is None, the NATS side started in the serving process.

    Every parameter but ``settings`` has its production default: the store
    ``settings`` names, a NATS connection made from ``settings``, change events
    published on NATS, the wall clock.
    """
    store = store if store is not None else default_store(settings)
    limits = InstanceLimits(settings.max_instances_per_service, settings.max_instances)
    started = clock().timestamp()
    membership = Membership(router_id(settings), MEMBER_TTL, time.time())
    # Contacts heard before this start died with the routers that heard them:
    # every ONLINE instance gets a full unhealthy_after from now.
    leases = Leases(membership, since=started, clock=lambda: clock().timestamp())
    registry = Registry(store, settings.timings, clock=clock, limits=limits, leases=leases)
    runtime = None
    if nats is not None:
        runtime = RouterRuntime(settings, nats, nats_parts(settings, registry, store, events))
    return build_app(settings, registry, runtime)


def nats_parts(
    settings: Settings,
    registry: Registry,
    store: InstanceStore,
    events: Callable[[NatsClient, OwnEvents], EventSink],
) -> NatsParts:
    """Everything that runs on the router's NATS connection, wired to ``registry``."""
    membership = registry.leases.membership
    members, forwarder = None, None
    if isinstance(store, JetStreamStore):  # shared: routers split the leases
        bucket = members_bucket(settings.kv_bucket)
        members = KvMembership(membership, bucket, settings.kv_replicas)
        forwarder = Forwarder()
    handlers = endpoints(
        registry,
        max_request_bytes=settings.max_request_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
        forward=forwarder.heartbeat if forwarder is not None else None,
        shared_subjects=settings.shared_subjects,
    )
    responder = NatsResponder(
        handlers,
        max_in_flight=settings.max_in_flight,
        max_pending=settings.max_pending,
        # Shared and per-service registrations wait in one lane: one capacity.
        lanes={
            subject: ("registration", settings.register_lane)
            for subject in (REGISTER_SUBJECT, service_subject(None, REGISTER))
        },
        own_slots=[router_forward_subject(membership.self_id)],
    )
    micro = MicroControl(
        membership.self_id,
        responder.stats,
        queue_group=QUEUE_GROUP,
        metadata={"store": settings.store},
    )
    discovery = None
    if settings.micro_discovery:
        discovery = MicroDiscovery(
            registry, period=settings.micro_poll, max_metadata_bytes=settings.max_metadata_bytes
        )
    timings, loop_lag = registry.timings, LoopLag()
    sweeper = Sweeper(
        registry.liveness,
        tick_for(timings.unhealthy_after),
        # Shared leases: a router that cannot hear itself may have been counted
        # gone, and cannot be sure it hears its instances either.
        hearing=(lambda: membership.hearing(time.time())) if members is not None else None,
        hearing_grace=2 * timings.heartbeat_interval,
        # Behind: the loop runs late, or requests wait unread in a subscription's queue.
        lag=lambda: max(loop_lag.lag(), responder.backlog()),
    )
    registry.leases.holding_back = sweeper.holding_back
    # On a shared bucket the feed is the watch's: one numbering (revisions) for all routers.
    feed = EventFeed(
        membership.self_id,
        max_streams=settings.max_event_streams,
        bucket=settings.kv_bucket if isinstance(store, JetStreamStore) else None,
    )
    if isinstance(store, JetStreamStore):
        store.set_feed(feed)
        feed.settle = store.caught_up  # listings wait for the watch to see our writes
    shape = Shape(
        store=settings.store,
        bucket=settings.kv_bucket if members is not None else None,
        heartbeat_interval=float(timings.heartbeat_interval),
        unhealthy_after=float(timings.unhealthy_after),
        offline_after=float(timings.offline_after),
        remove_after=float(timings.remove_after),
    )
    return NatsParts(
        peers=PeerCheck(membership.self_id, shape),
        registry=registry,
        store=store,
        feed=feed,
        events=events,
        responder=responder,
        micro=micro,
        sweeper=sweeper,
        loop_lag=loop_lag,
        heap=HeapKeeper(),
        members=members,
        forwarder=forwarder,
        discovery=discovery,
    )
