"""Composition root: wires settings, store, registry, NATS and Sanic into one app."""

from __future__ import annotations

import itertools

import structlog
from aegis.sdk.connection import connect
from nats.aio.client import Client as NatsClient
from sanic import Sanic

from .api import blueprints
from .errors_http import json_error
from .events import NatsEventSink
from .handlers import endpoints
from .nats_responder import NatsResponder
from .registry import Registry
from .settings import Settings
from .store import MemoryStore
from .sweeper import Sweeper, tick_for

log = structlog.get_logger("aegis.router")

_app_numbers = itertools.count()


class NatsUnavailableError(RuntimeError):
    """The router could not reach NATS at start-up."""


def create_app(
    settings: Settings, registry: Registry | None = None, *, serve_nats: bool = True
) -> Sanic:  # type: ignore[type-arg]
    """A router app.

    ``registry`` is injectable and ``serve_nats=False`` leaves NATS out, so the
    REST routes can be tested alone (sanic-testing runs the listeners on every
    request).
    """
    # Sanic keeps a process-wide registry of app names; tests build many apps.
    number = next(_app_numbers)
    app: Sanic = Sanic(  # type: ignore[type-arg]
        "aegis-router" if number == 0 else f"aegis-router-{number}",
        configure_logging=False,
    )
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ext.openapi.describe(
        "AegisIPC admin API",
        version="1.0.0",
        description="Read the AegisIPC service registry. Every error is "
        '`{"error": {"code", "message", "details?"}}`.',
    )
    app.ctx.registry = registry or Registry(MemoryStore(), settings.timings)
    app.ctx.settings = settings
    for blueprint in blueprints():
        app.blueprint(blueprint)
    app.error_handler.add(Exception, json_error)
    if serve_nats:
        _serve_nats(app, settings)
    return app


def _serve_nats(app: Sanic, settings: Settings) -> None:  # type: ignore[type-arg]
    """Answer the ``ipc.service.*`` subjects and sweep, from the serving process's listeners."""
    registry: Registry = app.ctx.registry
    responder = NatsResponder(
        endpoints(
            registry,
            max_request_bytes=settings.max_request_bytes,
            max_metadata_bytes=settings.max_metadata_bytes,
        ),
        max_in_flight=settings.max_in_flight,
    )
    sweeper = Sweeper(registry, tick_for(registry.timings.unhealthy_after))
    stopping = False

    async def on_disconnected() -> None:
        if not stopping:  # draining on shutdown disconnects too; that is no news
            log.warning("nats_disconnected")
            sweeper.pause("nats_disconnected")

    async def on_reconnected() -> None:
        log.info("nats_reconnected")
        # Clients heartbeat within one interval, or re-register within two.
        sweeper.resume(grace=2 * registry.timings.heartbeat_interval)

    # NATS lives in the serving process (Sanic's worker): a connection made in
    # the main process would never be serviced.
    @app.before_server_start
    async def start_nats(app: Sanic) -> None:  # type: ignore[type-arg]
        url = settings.nats_url or "nats://127.0.0.1:4222"
        try:
            nc = await connect(
                url.split(","),
                name="aegis-router",
                attempts=settings.nats_connect_attempts,
                connect_timeout=2.0,
                backoff_base=0.2,
                backoff_max=2.0,
                reconnect_wait=0.25,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
        except Exception as exc:
            log.error("nats_unreachable", url=url, error=str(exc))
            raise NatsUnavailableError(
                f"cannot reach NATS at {url}; check AEGIS_NATS_URL / --nats-url, "
                "or leave it unset to run the bundled nats-server"
            ) from exc
        app.ctx.nc = nc
        await registry.load()
        registry.set_event_sink(NatsEventSink(nc))
        await responder.start(nc)
        sweeper.start()
        timings = registry.timings
        log.info(
            "router_ready",
            nats_url=url,
            http=f"{settings.http_host}:{settings.http_port}",
            heartbeat_interval=timings.heartbeat_interval,
            unhealthy_after=timings.unhealthy_after,
            offline_after=timings.offline_after,
            remove_after=timings.remove_after,
        )

    @app.before_server_stop
    async def stop_nats(app: Sanic) -> None:  # type: ignore[type-arg]
        nonlocal stopping
        stopping = True
        await sweeper.stop()
        await responder.stop()
        registry.set_event_sink(None)
        nc: NatsClient | None = getattr(app.ctx, "nc", None)
        if nc is not None and not nc.is_closed:
            await nc.drain()
        log.info("nats_drained")
