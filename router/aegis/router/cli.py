"""``aegis-router``: the router process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

import structlog

from .app import create_app
from .embedded_nats import EmbeddedNats, EmbeddedNatsError
from .logging_setup import configure_logging
from .settings import load_settings

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
        app = create_app(settings)
        # One process: the in-memory registry must not be split across workers.
        # Sanic handles SIGINT/SIGTERM here and returns once the server stopped.
        app.run(
            host=settings.http_host,
            port=settings.http_port,
            single_process=True,
            motd=settings.log_format == "console",
            access_log=False,
        )
    except Exception as exc:
        log.error("router_failed", error=str(exc))
        print(f"aegis-router: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    log.info("router_stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
