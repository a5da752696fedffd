"""The router's NATS connection: credentials from settings, and start-up failures said once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from aegis.connect.auth import NatsAuth, redact_url
from aegis.connect.connection import ConnectRejectedError, connect, server_urls
from aegis.router.leases.membership_kv import members_bucket
from aegis.router.logging_setup import ReportedError
from aegis.router.settings import Settings
from aegis.router.store.jetstream import check_existing_bucket
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr, ValidationError

log = structlog.get_logger("aegis.router")

Callback = Callable[[], Awaitable[None]]


class Connector(Protocol):
    """How the runtime gets its NATS connection (``connect_router``, or a test's)."""

    def __call__(
        self,
        settings: Settings,
        *,
        disconnected_cb: Callback | None = None,
        reconnected_cb: Callback | None = None,
    ) -> Awaitable[NatsClient]:
        """Connect as ``settings`` say, with the connection's callbacks."""
        ...


class NatsUnavailableError(ReportedError):
    """The router could not reach NATS at start-up (logged already)."""


def nats_auth(settings: Settings) -> NatsAuth | None:
    """The router's NATS credentials and TLS settings, or None when none are set.

    Raises ``ValueError`` (naming no secret) when they do not fit together.
    """
    fields = {
        "user": settings.nats_user,
        # Secrets wrapped at once: a traceback showing locals must not print them.
        "password": _secret(settings.nats_password),
        "token": _secret(settings.nats_token),
        "nkey_seed": settings.nats_nkey_seed,
        "creds": settings.nats_creds,
        "tls_ca": settings.nats_tls_ca,
        "tls_cert": settings.nats_tls_cert,
        "tls_key": settings.nats_tls_key,
    }
    given = {name: value for name, value in fields.items() if value is not None}
    if not given:
        return None
    try:
        return NatsAuth.model_validate(given)
    except ValidationError as exc:  # hides the input: no password in the message
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(reasons) from exc


def _secret(value: str | None) -> SecretStr | None:
    return None if value is None else SecretStr(value)


def shown_url(settings: Settings) -> str:
    """The configured server list with passwords and tokens redacted."""
    return ",".join(redact_url(part) for part in server_urls(settings.nats_url or DEFAULT_URL))


DEFAULT_URL = "nats://127.0.0.1:4222"


def connected_server(nc: NatsClient) -> str | None:
    """The server ``nc`` is connected to now, as ``host:port`` (no credentials), if any.

    Logged on start and reconnect: a cluster tells its clients of every node, so
    the router may be on a node it was not given; the chaos checker reads this.
    """
    url = nc.connected_url
    # The netloc may carry user:password@ (or a token@): keep what follows the last @.
    return None if url is None else url.netloc.rpartition("@")[2]


async def connect_router(
    settings: Settings,
    *,
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
) -> NatsClient:
    """Connect as the router does; ``NatsUnavailableError`` (logged once) if it cannot."""
    shown = shown_url(settings)
    try:
        nc = await connect(
            settings.nats_url or DEFAULT_URL,
            name="aegis-router",
            attempts=settings.nats_connect_attempts,
            connect_timeout=2.0,
            backoff_base=0.2,
            backoff_max=2.0,
            reconnect_wait=0.25,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
            auth=nats_auth(settings),
            # Its own change events would come back to its event feed, a whole
            # inbound message per registration: the feed takes them from the
            # sink instead (bootstrap.py, runtime.py). Nothing else here listens for
            # what this connection sends (requests go to other routers and
            # services; JetStream's deliveries come from the server).
            no_echo=True,
        )
    except ValueError as exc:  # auth settings that do not fit, or a missing file
        raise _startup_failure(
            "nats_auth_invalid",
            "fix the NATS authentication settings (AEGIS_NATS_USER ... AEGIS_NATS_TLS_KEY)",
            error=str(exc),
        ) from exc
    except ConnectRejectedError as exc:
        raise _startup_failure(
            "nats_auth_failed",
            "check AEGIS_NATS_USER / AEGIS_NATS_PASSWORD / AEGIS_NATS_TOKEN / "
            "AEGIS_NATS_NKEY_SEED / AEGIS_NATS_CREDS and the AEGIS_NATS_TLS_* settings",
            url=shown,
            error=str(exc),
        ) from exc
    except Exception as exc:
        raise _startup_failure(
            "nats_unreachable",
            "check AEGIS_NATS_URL / --nats-url, or leave it unset to run the bundled nats-server",
            url=shown,
            error=str(exc),
        ) from exc
    _warn_if_credentials_unasked(nc, settings, shown)
    return nc


def _warn_if_credentials_unasked(nc: NatsClient, settings: Settings, shown: str) -> None:
    """Credentials given to a server that asks for none: say so, since the operator
    believes the bus is closed and it is open to anyone who reaches it."""
    given = (settings.nats_user, settings.nats_token, settings.nats_nkey_seed, settings.nats_creds)
    # nats-py keeps the server's INFO in a private field; auth_required is in every INFO.
    if any(v is not None for v in given) and not nc._server_info.get("auth_required"):
        log.warning(
            "nats_credentials_unused",
            url=shown,
            hint="the NATS server asks for no credentials, so anyone who reaches it can "
            "register any name: configure authorization on the server "
            "(deploy/nats-permissions.conf), or drop the AEGIS_NATS_* credentials",
        )


async def check_nats(settings: Settings) -> None:
    """Connect once and close: fails as ``connect_router`` would, before workers start."""
    nc = await connect_router(settings)
    try:
        if settings.store == "jetstream":
            for bucket in (settings.kv_bucket, members_bucket(settings.kv_bucket)):
                await check_existing_bucket(nc, bucket, settings.kv_replicas)
    finally:
        await nc.close()


def _startup_failure(event: str, hint: str, **fields: str) -> NatsUnavailableError:
    """Log why the router cannot start, once, and the error that stops it."""
    log.error(event, hint=hint, **fields)
    return NatsUnavailableError(f"{event}: {fields.get('error', '')}; {hint}")
