"""The Sanic app: REST routes, token check and JSON errors over a registry.

``bootstrap`` builds it; the NATS side (``runtime``), when there is one, runs
from the serving process's listeners, since a connection made in Sanic's main
process would never be serviced.
"""

from __future__ import annotations

import itertools

from aegis.router.registry.operations import Registry
from aegis.router.rest import event_stream, maintenance, routes, whoami
from aegis.router.rest.auth import audit, guard
from aegis.router.rest.errors import json_error
from aegis.router.rest.instance_json import InstanceTexts
from aegis.router.rest.ports import NatsSide
from aegis.router.rest.tokens import load_tokens
from aegis.router.settings import Settings
from sanic import Sanic

_app_numbers = itertools.count()


def build_app(settings: Settings, registry: Registry, runtime: NatsSide | None) -> Sanic:  # type: ignore[type-arg]
    """The app serving ``registry``; ``runtime`` (None: REST only) starts and stops with it.

    Raises ``TokensFileError`` if the tokens file cannot be used.
    """
    tokens = load_tokens(settings.tokens_file, settings.admin_token)
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
        '`{"error": {"code", "message", "details?"}}`. With tokens configured, every '
        "`/api/v1/admin` request carries `Authorization: Bearer <token>`: reads need role "
        "`read`, deregister and maintenance need `operator` (401 without a known token, "
        "403 with a read token).",
    )
    # What the routes reach through request.app.ctx: they are declared once, at
    # module level, and serve every app built here.
    app.ctx.registry = registry
    app.ctx.runtime = runtime
    app.ctx.settings = settings
    app.ctx.texts = InstanceTexts()  # the instance listings' texts, kept between requests
    app.on_request(guard(tokens))
    app.register_middleware(audit, "response")
    for blueprint in (routes.admin, routes.ops, maintenance.bp, event_stream.bp, whoami.bp):
        app.blueprint(blueprint)
    app.error_handler.add(Exception, json_error)
    if runtime is not None:
        app.before_server_start(lambda _app: runtime.start())
        app.before_server_stop(lambda _app: runtime.stop())
    return app
