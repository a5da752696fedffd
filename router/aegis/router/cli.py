"""``aegis-router``: the router process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import structlog
from sanic import Sanic
from sanic.worker.loader import AppLoader

from .app import create_app
from .embedded_nats import EmbeddedNats, EmbeddedNatsError
from .logging_setup import configure_logging
from .settings import Settings, load_settings

log = structlog.get_logger("aegis.router")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGINT or SIGTERM; returns the exit code."""
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    embedded: EmbeddedNats | None = None
    if settings.nats_url is None:
        embedded = EmbeddedNats(
            settings.embedded_nats_host, settings.embedded_nats_port, settings.data_dir
        )
        try:
            embedded.start()
        except EmbeddedNatsError as exc:
            log.error("embedded_nats_failed", error=str(exc))
            print(f"aegis-router: {exc}", file=sys.stderr)
            return 2
        settings = replace(settings, nats_url=embedded.url)
    try:
        serve(settings)
    except Exception as exc:
        log.error("router_failed", error=str(exc))
        print(f"aegis-router: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    log.info("router_stopped")
    return 0


def worker_app(settings: Settings) -> Sanic:  # type: ignore[type-arg]
    """Build the app inside a Sanic worker process (which has its own logging)."""
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def serve(settings: Settings) -> None:
    """Serve HTTP and NATS until SIGINT/SIGTERM (Sanic handles both and returns).

    One worker runs in this process. Several workers (JetStream store only:
    an in-memory registry must not be split) are separate processes, each
    with its own NATS connection in the routers' queue group, built by
    ``worker_app``.
    """
    host, port, motd = settings.http_host, settings.http_port, settings.log_format == "console"
    if settings.workers == 1:
        app = create_app(settings)
        app.run(host=host, port=port, motd=motd, access_log=False, single_process=True)
        return
    loader = AppLoader(factory=partial(worker_app, settings))
    app = loader.load()
    app.prepare(host=host, port=port, motd=motd, access_log=False, workers=settings.workers)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
