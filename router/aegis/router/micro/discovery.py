"""NATS micro services (ADR-32) found on the bus, listed as instances of the registry.

Every ``poll`` seconds one router, the holder of partition 0 (so the task
moves with that partition when routers come and go), asks ``$SRV.INFO`` on a
fresh inbox and gathers every answer. Each service but our own routers
becomes, or stays, an instance: its name the service, its id the instance
id, the rest of its info the metadata, marked ``source: micro``. An answer
counts as contact; a service that stops answering ages as any instance does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import structlog
from aegis.connect.tasks import cancel
from aegis.router.domain import InstanceKey, Outcome
from aegis.router.leases.membership import Membership
from aegis.router.micro.control import SERVICE_NAME as ROUTER_SERVICE
from aegis.router.registry.operations import Registry
from aegis.wire.messages import INSTANCE_ID_PATTERN, SERVICE_NAME_PATTERN, check_metadata
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError

log = structlog.get_logger("aegis.router.micro.discovery")

INFO_SUBJECT: Final = "$SRV.INFO"
# Answers come within milliseconds on a healthy bus: a poll ends once none has
# come for QUIET seconds, and after MAX_WINDOW seconds whatever still comes.
QUIET: Final = 0.25
MAX_WINDOW: Final = 2.0
# Metadata keys an endpoint keeps (ADR-32 endpoints also carry their own metadata).
ENDPOINT_KEYS: Final = ("name", "subject", "queue_group")


class UnlistableError(ValueError):
    """An ``$SRV.INFO`` answer that cannot be an instance of the registry."""


@dataclass(frozen=True, slots=True)
class MicroInstance:
    """What one ``$SRV.INFO`` answer becomes in the registry."""

    key: InstanceKey
    metadata: dict[str, Any]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _endpoints(value: object) -> list[dict[str, str | None]]:
    if not isinstance(value, list):
        return []
    return [{k: _text(e.get(k)) for k in ENDPOINT_KEYS} for e in value if isinstance(e, Mapping)]


def instance_from_info(info: Mapping[str, Any], max_metadata_bytes: int) -> MicroInstance:
    """The instance an ``io.nats.micro.v1.info_response`` describes.

    Raises ``UnlistableError`` if its name or id is not one the registry
    accepts, or its metadata cannot fit in ``max_metadata_bytes`` even
    without endpoints (endpoints are dropped from the end until it fits).
    """
    name, instance_id = info.get("name"), info.get("id")
    if not isinstance(name, str) or not re.fullmatch(SERVICE_NAME_PATTERN, name):
        raise UnlistableError(f"name {name!r} is not a service name the registry accepts")
    if not isinstance(instance_id, str) or not re.fullmatch(INSTANCE_ID_PATTERN, instance_id):
        raise UnlistableError(f"id {instance_id!r} is not an instance id the registry accepts")
    own = info.get("metadata")
    metadata: dict[str, Any] = {
        "source": "micro",
        "version": _text(info.get("version")),
        "description": _text(info.get("description")),
        "metadata": dict(own) if isinstance(own, Mapping) else {},
        "endpoints": _endpoints(info.get("endpoints")),
    }
    try:
        check_metadata(metadata)
    except ValueError as exc:
        raise UnlistableError(str(exc)) from None
    endpoints: list[Any] = metadata["endpoints"]
    while len(msgpack.packb(metadata)) > max_metadata_bytes:
        if not endpoints:
            raise UnlistableError(f"its info is over {max_metadata_bytes} bytes encoded")
        endpoints.pop()
    return MicroInstance(InstanceKey(name, instance_id), metadata)


def is_poller(membership: Membership) -> bool:
    """Whether this router polls: the one holding partition 0 (one among all routers)."""
    return membership.holder_of(0) == membership.self_id


async def gather_info(nc: NatsClient) -> list[dict[str, Any]]:
    """Every answer to one ``$SRV.INFO`` request (scatter-gather, as ``nats micro ls``)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    answers: list[dict[str, Any]] = []
    try:
        await nc.publish(INFO_SUBJECT, b"", reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_WINDOW
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=min(QUIET, left))
            except NatsTimeoutError:
                break
            with contextlib.suppress(ValueError):  # not JSON: not an ADR-32 answer
                answer = json.loads(msg.data)
                if isinstance(answer, dict):
                    answers.append(answer)
    finally:
        await sub.unsubscribe()
    return answers


def poll_period(micro_poll: float, unhealthy_after: float) -> float:
    """Seconds between polls: ``micro_poll``, unless every micro service would go
    UNHEALTHY between two of them; then half of ``unhealthy_after`` (said once)."""
    if micro_poll < unhealthy_after:
        return micro_poll
    period = unhealthy_after / 2
    log.warning(
        "micro_poll_shortened",
        micro_poll=micro_poll,
        unhealthy_after=unhealthy_after,
        period=period,
        reason="a micro service counts as heard only when it answers a poll: polled no "
        "more often than unhealthy_after, each would go UNHEALTHY between polls",
    )
    return period


class MicroDiscovery:
    """The background task that keeps the bus's micro services in the registry."""

    def __init__(self, registry: Registry, *, period: float, max_metadata_bytes: int) -> None:
        self._registry = registry
        self._period = poll_period(period, registry.timings.unhealthy_after)
        self._max_metadata_bytes = max_metadata_bytes
        self._task: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, str]] = set()  # bad names, each warned about once

    def start(self, nc: NatsClient) -> None:
        """Begin polling in the running loop."""
        self._task = asyncio.create_task(self._run(nc), name="aegis-micro-discovery")

    async def stop(self) -> None:
        """Stop polling (a poll under way is abandoned)."""
        task, self._task = self._task, None
        await cancel(task)

    async def _run(self, nc: NatsClient) -> None:
        while True:
            if is_poller(self._registry.leases.membership):
                try:
                    await self.poll(nc)
                except Exception as exc:  # NATS or store trouble: the next poll tries again
                    log.warning("micro_poll_failed", error=repr(exc))
            await asyncio.sleep(self._period)

    async def poll(self, nc: NatsClient) -> int:
        """One scatter-gather, applied to the registry; how many services were listed."""
        listed = 0
        answers = await gather_info(nc)
        for info in answers:
            if info.get("name") == ROUTER_SERVICE:
                continue  # routers are the registry, not in it
            try:
                found = instance_from_info(info, self._max_metadata_bytes)
            except UnlistableError as exc:
                self._warn_once(info, str(exc))
                continue
            decision = await self._registry.micro_seen(found.key, found.metadata)
            listed += 1
            if decision.outcome is Outcome.CREATED:
                log.info(
                    "micro_service_discovered",
                    service=found.key.service_name,
                    instance=found.key.instance_id,
                    version=found.metadata["version"],
                )
        log.debug("micro_poll", answers=len(answers), listed=listed)
        return listed

    def _warn_once(self, info: Mapping[str, Any], reason: str) -> None:
        seen = (str(info.get("name"))[:128], str(info.get("id"))[:128])
        if seen not in self._warned:
            self._warned.add(seen)
            log.warning("micro_service_unlistable", name=seen[0], id=seen[1], reason=reason)
