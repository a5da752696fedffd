"""The router as a NATS micro service (ADR-32): each router process is one instance.

ADR-32 clients (``nats micro ls``, nats.js's ``Svcm``, ...) find services by
requesting ``$SRV.PING``, ``$SRV.INFO`` or ``$SRV.STATS``, narrowed or not to
``.aegis-router`` and ``.aegis-router.<router id>``; every router answers with
JSON describing itself and its endpoints, the subjects it serves.

nats-py's ``nats.micro.Service`` is not used: it subscribes each endpoint
itself and awaits one request at a time, while the registry subjects are
served by ``NatsResponder``'s bounded concurrent tasks. So this module answers
only the control subjects, reading the numbers the responder keeps.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import structlog
from aegis.router.bus.endpoint_stats import EndpointStats
from aegis.wire.messages import ROUTER_PREFIX, SERVICE_SUBJECT_PREFIX
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger("aegis.router.micro")

SERVICE_NAME: Final = "aegis-router"
DESCRIPTION: Final = "AegisIPC service registry router"
PREFIX: Final = "$SRV"
VERBS: Final = ("PING", "INFO", "STATS")
RESPONSE_TYPES: Final = {verb: f"io.nats.micro.v1.{verb.lower()}_response" for verb in VERBS}


def package_version() -> str:
    """The installed aegis-ipc version (ADR-32 wants semver); 0.0.0 when not installed."""
    try:
        return version("aegis-ipc")
    except PackageNotFoundError:  # pragma: no cover - run from a bare source tree
        return "0.0.0"


def control_subjects(verb: str, router_id: str) -> list[str]:
    """The three subjects ``verb`` reaches this router on: everyone, every router, this one."""
    every = f"{PREFIX}.{verb}"
    return [every, f"{every}.{SERVICE_NAME}", f"{every}.{SERVICE_NAME}.{router_id}"]


def endpoint_name(subject: str) -> str:
    """A name as ADR-32 allows (letters, digits, ``-``, ``_``): the subject's last
    token, ``router-`` first for a router's own subjects (which hold its id), ``svc-``
    first for the per-service ones (``ipc.svc.*.<verb>``; ``svc-router-heartbeat``
    for the router's own ``ipc.svc.*.heartbeat.<id>``)."""
    if subject.startswith(f"{SERVICE_SUBJECT_PREFIX}."):
        tokens = subject.split(".")
        return f"svc-{tokens[3]}" if len(tokens) == 4 else f"svc-router-{tokens[3]}"
    last = subject.rsplit(".", 1)[-1]
    return f"router-{last}" if subject.startswith(f"{ROUTER_PREFIX}.") else last


def iso_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``, as every client library parses it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MicroControl:
    """Answers the ADR-32 control subjects for one router.

    ``stats`` maps each served subject to its counters (``NatsResponder.stats``);
    every subject is listed as an endpoint in ``queue_group``.
    """

    def __init__(
        self,
        router_id: str,
        stats: Mapping[str, EndpointStats],
        *,
        queue_group: str,
        metadata: Mapping[str, str] | None = None,
        service_version: str | None = None,
    ) -> None:
        self.router_id = router_id
        self._stats = stats
        self._queue_group = queue_group
        self._metadata = dict(metadata or {})
        self._version = service_version or package_version()
        self._started = datetime.now(UTC)
        self._subs: list[Subscription] = []

    def _identity(self, verb: str) -> dict[str, Any]:
        return {
            "type": RESPONSE_TYPES[verb],
            "name": SERVICE_NAME,
            "id": self.router_id,
            "version": self._version,
            "metadata": self._metadata,
        }

    def _endpoint(self, subject: str) -> dict[str, Any]:
        return {
            "name": endpoint_name(subject),
            "subject": subject,
            "queue_group": self._queue_group,
        }

    def ping(self) -> dict[str, Any]:
        """The ``io.nats.micro.v1.ping_response``."""
        return self._identity("PING")

    def info(self) -> dict[str, Any]:
        """The ``io.nats.micro.v1.info_response``: who, and which subjects."""
        endpoints = [{**self._endpoint(s), "metadata": {}} for s in self._stats]
        return {**self._identity("INFO"), "description": DESCRIPTION, "endpoints": endpoints}

    def stats(self) -> dict[str, Any]:
        """The ``io.nats.micro.v1.stats_response``: each endpoint's counts since start."""
        endpoints = [
            {
                **self._endpoint(subject),
                "num_requests": counts.num_requests,
                "num_errors": counts.num_errors,
                "last_error": counts.last_error,
                "processing_time": counts.processing_time,
                "average_processing_time": counts.average_processing_time,
                # Optional in ADR-32, but nats-py's EndpointStats.from_dict needs it.
                "data": {},
            }
            for subject, counts in self._stats.items()
        ]
        started = iso_utc(self._started)
        return {**self._identity("STATS"), "started": started, "endpoints": endpoints}

    async def start(self, nc: NatsClient) -> None:
        """Subscribe to the control subjects (every router answers: no queue group)."""
        self._started = datetime.now(UTC)
        answers = {"PING": self.ping, "INFO": self.info, "STATS": self.stats}
        for verb in VERBS:
            callback = self._responder(answers[verb])
            for subject in control_subjects(verb, self.router_id):
                self._subs.append(await nc.subscribe(subject, cb=callback))
        await nc.flush()
        log.debug("micro_service_started", name=SERVICE_NAME, id=self.router_id)

    async def stop(self) -> None:
        """Stop answering: the router no longer shows in ``nats micro ls``."""
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()

    def _responder(self, answer: Callable[[], dict[str, Any]]) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            if not msg.reply:
                return
            try:
                await msg.respond(json.dumps(answer()).encode())
            except Exception:  # the connection failing under us; the asker retries
                log.exception("micro_reply_failed", subject=msg.subject)

        return on_message
