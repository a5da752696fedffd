"""Getting a NATS connection with bounded, backed-off attempts.

nats-py's own first ``connect`` goes through its reconnect loop and can retry
for minutes. Here each attempt is short and bounded; once connected, the
connection reconnects by itself forever (a registry client must outlive a
NATS restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from nats.aio.client import Client as NatsClient

from .resilience import backoff_delay

log = structlog.get_logger("aegis.nats")

ErrorCallback = Callable[[Exception], Awaitable[None]]
Callback = Callable[[], Awaitable[None]]


class ConnectFailedError(Exception):
    """No attempt reached a NATS server."""


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
) -> NatsClient:
    """Connect, trying ``attempts`` times with exponential backoff between tries.

    Once connected, a lost connection is retried forever, ``reconnect_wait``
    seconds apart per server.

    Raises ``ConnectFailedError`` naming the last cause.
    """
    urls = [servers] if isinstance(servers, str) else list(servers)
    last: BaseException | None = None
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
            )
        except Exception as exc:  # nats-py raises OSError, its own errors, timeouts
            last = exc
            log.debug("nats_connect_failed", attempt=attempt + 1, error=repr(exc))
            continue
        # Connected: from now on let nats-py reconnect on its own, without limit.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = reconnect_wait
        return nc
    raise ConnectFailedError(
        f"could not connect to NATS at {', '.join(urls)} after {attempts} attempts: {last!r}"
    )
