"""Getting a NATS connection with bounded, backed-off attempts.

nats-py's own first ``connect`` goes through its reconnect loop and can retry
for minutes. Here each attempt is short and bounded; once connected, the
connection reconnects by itself forever (a registry client must outlive a
NATS restart).
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client as NatsClient

from .auth import NatsAuth, connect_kwargs, redact_url
from .backoff import backoff_delay
from .log import get_logger

log = get_logger("aegis.sdk.nats")

ErrorCallback = Callable[[Exception], Awaitable[None]]
Callback = Callable[[], Awaitable[None]]


class ConnectFailedError(Exception):
    """No attempt reached a NATS server."""


class ConnectRejectedError(ConnectFailedError):
    """NATS was reached but the last attempt failed on credentials or TLS verification."""


def _rejected(exc: BaseException) -> bool:
    """True for an authorization violation or a TLS failure (certificate, handshake)."""
    return isinstance(exc, ssl.SSLError) or "authorization violation" in str(exc).lower()


def server_urls(servers: str | Sequence[str]) -> list[str]:
    """The server URLs: a list as given, or a string split at commas (``"nats://a,nats://b"``)."""
    given = servers.split(",") if isinstance(servers, str) else servers
    urls = [url.strip() for url in given if url.strip()]
    if not urls:
        raise ValueError("no NATS server URL given")
    return urls


async def _log_error(exc: Exception) -> None:
    log.debug("nats_error", error=repr(exc))


async def connect(
    servers: str | Sequence[str],
    *,
    name: str,
    attempts: int,
    connect_timeout: float,
    backoff_base: float,
    backoff_max: float,
    jitter: bool = True,
    reconnect_wait: float = 1.0,
    error_cb: ErrorCallback | None = None,
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
    auth: NatsAuth | None = None,
    no_echo: bool = False,
) -> NatsClient:
    """Connect, trying ``attempts`` times with exponential backoff between tries.

    ``auth`` gives credentials and TLS settings. With ``no_echo`` the server
    delivers none of this connection's own publishes to its subscriptions. Once connected, a lost
    connection is retried forever, ``reconnect_wait`` seconds apart per server.

    Raises ``ConnectFailedError`` naming the last cause (``ConnectRejectedError``
    when an attempt was refused: credentials, or TLS such as a certificate that
    did not verify), or at once ``ValueError`` when ``auth`` is unusable (a
    missing file, NKeys without the ``nkeys`` package).
    """
    urls = server_urls(servers)
    if auth is not None and auth.needs_nkeys and importlib.util.find_spec("nkeys") is None:
        raise ValueError(
            "NATS NKey seed and .creds authentication need the nkeys package: "
            "pip install 'nats-py[nkeys]'"
        )
    options = connect_kwargs(auth)
    last: BaseException | None = None
    rejection: BaseException | None = None  # any attempt refused: the likely cause
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(
                backoff_delay(attempt - 1, base=backoff_base, cap=backoff_max, jitter=jitter)
            )
        nc = NatsClient()
        try:
            # max_reconnect_attempts=1 with no wait: nats-py's connect loop then
            # gives each server two quick tries and gives up, instead of 60.
            await nc.connect(
                servers=urls,
                name=name,
                connect_timeout=connect_timeout,  # type: ignore[arg-type]  # float works
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=error_cb or _log_error,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                no_echo=no_echo,
                **options,
            )
        except Exception as exc:  # nats-py raises OSError, its own errors, timeouts
            last = exc
            if _rejected(exc):
                rejection = exc
            log.debug("nats_connect_failed", attempt=attempt + 1, error=repr(exc))
            continue
        # Connected: from now on let nats-py reconnect on its own, without limit.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = reconnect_wait
        return nc
    where = ", ".join(redact_url(url) for url in urls)
    if rejection is not None:
        raise ConnectRejectedError(
            f"NATS at {where} refused this client after {attempts} attempts "
            f"(check the NATS credentials and TLS settings): {rejection!r}"
        )
    raise ConnectFailedError(
        f"could not connect to NATS at {where} after {attempts} attempts: {last!r}"
    )
