"""Composition root: wires settings, store, registry, NATS and Sanic into one app."""

from __future__ import annotations

import itertools

from sanic import Sanic

from .api import blueprints
from .auth import require_token
from .errors_http import json_error
from .registry import Registry
from .runtime import RouterRuntime
from .settings import Settings

_app_numbers = itertools.count()


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
    runtime = RouterRuntime(settings, registry)
    app.ctx.registry = runtime.registry  # set at start-up for a JetStream store
    app.ctx.runtime = runtime
    app.ctx.settings = settings
    if settings.admin_token:
        app.on_request(require_token(settings.admin_token))
    for blueprint in blueprints():
        app.blueprint(blueprint)
    app.error_handler.add(Exception, json_error)
    if serve_nats:
        _serve_nats(app, runtime)
    return app


def _serve_nats(app: Sanic, runtime: RouterRuntime) -> None:  # type: ignore[type-arg]
    """Run the NATS side from the serving process's listeners.

    A connection made in Sanic's main process would never be serviced.
    """

    @app.before_server_start
    async def start_nats(app: Sanic) -> None:  # type: ignore[type-arg]
        app.ctx.registry = await runtime.start()

    @app.before_server_stop
    async def stop_nats(app: Sanic) -> None:  # type: ignore[type-arg]
        await runtime.stop()
