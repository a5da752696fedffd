"""The composition root: the one function that knows how the router's parts fit together.

The CLI, Sanic's worker processes and the tests all build the router here,
passing fakes where they want them; nothing else in the code wires parts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nats.aio.client import Client as NatsClient
from sanic import Sanic

from .app import build_app
from .events import NatsEventSink
from .nats_connection import Connector, connect_router
from .registry import EventSink, InstanceLimits, Registry, utc_now
from .runtime import RouterRuntime
from .settings import Settings
from .store import InstanceStore, MemoryStore
from .store_jetstream import JetStreamStore


def default_store(settings: Settings) -> InstanceStore:
    """The store ``settings.store`` names: the replicated bucket, or this process's memory."""
    if settings.store == "memory":
        return MemoryStore()
    return JetStreamStore(settings.kv_bucket, settings.kv_replicas)


def bootstrap(
    settings: Settings,
    *,
    store: InstanceStore | None = None,
    nats: Connector | None = connect_router,
    events: Callable[[NatsClient], EventSink] = NatsEventSink,
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
    registry = Registry(store, settings.timings, clock=clock, limits=limits)
    runtime = None if nats is None else RouterRuntime(settings, registry, store, nats, events)
    return build_app(settings, registry, runtime)
