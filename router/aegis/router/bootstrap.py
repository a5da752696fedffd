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
from aegis.router.bus.event_sink import NatsEventSink, OwnEvents
from aegis.router.leases.contacts import Leases
from aegis.router.leases.membership import MEMBER_TTL, Membership
from aegis.router.leases.membership_kv import KvMembership, members_bucket
from aegis.router.registry.operations import EventSink, InstanceLimits, Registry, utc_now
from aegis.router.rest.app import build_app
from aegis.router.runtime import RouterRuntime
from aegis.router.settings import Settings
from aegis.router.store.jetstream import JetStreamStore
from aegis.router.store.port import InstanceStore, MemoryStore
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
        members = None
        if isinstance(store, JetStreamStore):  # shared: routers split the leases
            bucket = members_bucket(settings.kv_bucket)
            members = KvMembership(membership, bucket, settings.kv_replicas)
        runtime = RouterRuntime(settings, registry, store, nats, events, members)
    return build_app(settings, registry, runtime)
