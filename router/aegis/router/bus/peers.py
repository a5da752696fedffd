"""Routers that disagree refuse to share a bus.

Routers on one NATS share the registry's subjects in one queue group, so each
answers a share of every service's requests. Two that keep different stores
(a memory store beside a JetStream one, or two buckets) or different timings
split the registry silently: one holds contacts the other never sees, and
marks live instances UNHEALTHY. Two memory stores, however alike, are two
registries. So every router answers on
``ROUTER_CONFIG_SUBJECT`` with what must match (its ``Shape``); a starting
router asks, gathers the answers for ``SURVEY_WINDOW`` and refuses to start
(exit 2, both shapes in the message) if any differs, and a running router
asked by one that differs logs an error, naming it.

Routers that met no one at start (two started at once, or on two halves of a
NATS cluster that heals later) meet afterwards: each router announces its
shape every ``ANNOUNCE_EVERY`` seconds, and one that hears a shape it cannot
share the bus with logs ``router_config_mismatch`` once for that router and
shape. Neither steps aside: which of the two is the right one is the
operator's call, and both leaving would turn a split registry into none.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import structlog
from aegis.connect.tasks import cancel
from aegis.router.logging_setup import ReportedError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger("aegis.router.bus.peers")

ROUTER_CONFIG_SUBJECT = "ipc.router.config"
# Answers on one bus come within milliseconds; this bounds a router's start.
SURVEY_WINDOW = 0.25
# How often a running router says what it keeps, for routers it did not meet at
# start; a mismatch is then logged within this long of the two meeting.
ANNOUNCE_EVERY = 10.0
HINT = (
    "give every router on this NATS the same AEGIS_STORE, AEGIS_KV_BUCKET and timings "
    "(AEGIS_HEARTBEAT_INTERVAL, AEGIS_UNHEALTHY_AFTER, AEGIS_OFFLINE_AFTER, "
    "AEGIS_REMOVE_AFTER), or put routers that must differ on another NATS"
)
MEMORY_HINT = (
    "a memory store is its own router's registry: run one router with AEGIS_STORE=memory "
    "on a NATS, or give every router AEGIS_STORE=jetstream to share one"
)


@dataclass(frozen=True)
class Shape:
    """What routers sharing the registry's subjects must agree on."""

    store: str
    bucket: str | None  # the JetStream bucket; None with the memory store
    heartbeat_interval: float
    unhealthy_after: float
    offline_after: float
    remove_after: float

    def text(self) -> str:
        """One line for a log or an error message."""
        where = self.store if self.bucket is None else f"{self.store} bucket {self.bucket}"
        return (
            f"{where}, heartbeat {self.heartbeat_interval:g} s, unhealthy after "
            f"{self.unhealthy_after:g} s, offline after {self.offline_after:g} s, removed "
            f"after {self.remove_after:g} s"
        )

    def conflict(self, other: Shape) -> str | None:
        """What to do about a router keeping ``other`` on this bus; None if they can share
        it (the same shape, in a store both see)."""
        if other != self:
            return HINT
        return MEMORY_HINT if self.store == "memory" else None


class RouterMismatchError(ReportedError):
    """Another router on this NATS keeps another store or timings (logged already)."""

    exit_code = 2


def _pack(router_id: str, shape: Shape) -> bytes:
    packed: bytes = msgpack.packb({"router": router_id, **asdict(shape)})
    return packed


def _unpack(data: bytes) -> tuple[str, Shape] | None:
    try:
        body: dict[str, Any] = msgpack.unpackb(data)
        router = body.pop("router")
        return str(router), Shape(**body)
    except Exception:
        return None  # not a router's answer (a newer field, or garbage): not ours to judge


class PeerCheck:
    """Answers other routers' surveys, surveys them once at start, and then says what it
    keeps every ``announce_every`` seconds."""

    def __init__(
        self,
        router_id: str,
        shape: Shape,
        window: float = SURVEY_WINDOW,
        announce_every: float = ANNOUNCE_EVERY,
    ) -> None:
        self.router_id = router_id
        self.shape = shape
        self._window = window
        self._announce_every = announce_every
        self._sub: Subscription | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._reported: set[tuple[str, Shape]] = set()  # logged once each

    async def start(self, nc: NatsClient) -> None:
        """Answer surveys from now on; ``RouterMismatchError`` (logged) if a router on
        this NATS answers ours with another shape."""
        self._sub = await nc.subscribe(ROUTER_CONFIG_SUBJECT, cb=self._answer(nc))
        answers: list[bytes] = []

        async def gather(msg: Msg) -> None:
            answers.append(msg.data)

        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox, cb=gather)
        await nc.publish(ROUTER_CONFIG_SUBJECT, _pack(self.router_id, self.shape), reply=inbox)
        await asyncio.sleep(self._window)
        await replies.unsubscribe()
        for data in answers:
            theirs = _unpack(data)
            if theirs is None or theirs[0] == self.router_id:
                continue  # not a router's answer, or our own (should NATS echo it)
            hint = self._mismatch(*theirs)
            if hint is not None:
                raise RouterMismatchError(
                    f"router {theirs[0]} on this NATS keeps {theirs[1].text()}; this one "
                    f"would keep {self.shape.text()}: {hint}"
                )
        self._announcer = asyncio.get_running_loop().create_task(
            self._announce(nc), name="aegis-peer-announce"
        )

    async def _announce(self, nc: NatsClient) -> None:
        packed = _pack(self.router_id, self.shape)
        while True:
            await asyncio.sleep(self._announce_every)
            with contextlib.suppress(Exception):  # reconnecting, or closed: next time
                await nc.publish(ROUTER_CONFIG_SUBJECT, packed)

    async def stop(self) -> None:
        """Stop announcing and answering."""
        announcer, self._announcer = self._announcer, None
        await cancel(announcer)
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def _answer(self, nc: NatsClient) -> Any:
        async def answer(msg: Msg) -> None:
            theirs = _unpack(msg.data)
            if theirs is not None and theirs[0] != self.router_id:
                # It refuses to start; say it here too, where the operator may look.
                self._mismatch(*theirs)
            if msg.reply:
                await nc.publish(msg.reply, _pack(self.router_id, self.shape))

        return answer

    def _mismatch(self, other: str, shape: Shape) -> str | None:
        """Log ``router_config_mismatch`` if router ``other`` keeping ``shape`` cannot share
        this bus; its hint, or None."""
        hint = self.shape.conflict(shape)
        if hint is not None and (other, shape) not in self._reported:
            self._reported.add((other, shape))
            log.error(
                "router_config_mismatch",
                other_router=other,
                ours=self.shape.text(),
                theirs=shape.text(),
                hint=hint,
            )
        return hint
