"""The workload: raw wire clients and SDK clients, every request recorded.

Raw clients (nats-py + MessagePack, as a client in another language would
be) run one actor per instance id. Each client has a few ids of its own and
competes with every other client for a few SHARED ids, each with its own
session, so registrations race and takeovers after OFFLINE happen. An actor
registers, heartbeats a little more often than the interval, and at the end
of a random lifetime deregisters, abandons the instance (it expires, and the
actor may come back as a new session) or stalls past ``unhealthy_after`` and
carries on. Half the raw clients heartbeat the holder's own subject named in
the replies (as the SDK does), half only the shared one (a v1 client).

SDK clients (``aegis.sdk.ServiceClient``) keep a few instances alive, now and
then deregister and register one again, and reopen as a new session: their
own retries, 404 re-registrations and reconnect re-registrations run. Their
requests are recorded through ``RecordingConnection``.

Every client connects to its own node first with every node as a fallback.
When the run turns ``steady`` (the quiet period), live actors keep
heartbeating and nothing else happens, so the routers can converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from aegis.connect.connection import connect as aegis_connect
from aegis.sdk import AegisError, ClientConfig, DuplicateInstanceError, ServiceClient
from nats.aio.client import Client as NatsClient

from .cluster import Timings, connect_quietly
from .recording import Recorder, RecordingConnection

REGISTER = "ipc.service.register"
HEARTBEAT = "ipc.service.heartbeat"
DEREGISTER = "ipc.service.deregister"
DISCOVER = "ipc.service.discover"

# The longest any client waits for a reply (the history's ``client_timeout``):
# above the router's 1 s heartbeat forward, so a forward that gets no answer
# still comes back to the client in time.
CLIENT_TIMEOUT = 2.0
# A heartbeat to the holder's own subject gives up sooner, then goes to the shared one.
HOLDER_TIMEOUT = 1.0
SHARED_SERVICE = "shared"
SHARED_IDS = 3


@dataclass
class Phase:
    """Where the run is: chaos, then steady (quiet period), then stopping."""

    steady: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when stopping; False once stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(0.0, seconds))
        return not self.stopping.is_set()


def rotated(urls: Sequence[str], first: int) -> list[str]:
    """``urls`` starting at index ``first`` (this client's home node)."""
    first %= len(urls)
    return [*urls[first:], *urls[:first]]


@dataclass
class Client:
    """What every client has: a name (in the history), the recorder, the run's phase,
    and its own seeded random numbers."""

    name: str
    recorder: Recorder
    phase: Phase
    rng: random.Random


@dataclass
class RawClient(Client):
    """One wire client with its own NATS connection and a few instance actors;
    ``holder_subjects``: heartbeat the holder's subject named in replies, as the SDK does."""

    timings: Timings = field(default_factory=Timings)
    holder_subjects: bool = False
    nc: NatsClient | None = None
    # Every request of every session this client runs carries a higher ``seq``.
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def connect(self, servers: list[str]) -> None:
        """Connect, home node first, failing over to the others (short pings notice a
        frozen node within seconds)."""
        self.nc = await connect_quietly(servers, self.name, dont_randomize=True)

    async def close(self) -> None:
        """Close the connection."""
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def call(
        self, subject: str, body: dict[str, Any], timeout: float = CLIENT_TIMEOUT
    ) -> dict[str, Any] | None:
        """One recorded request (a session's with its next ``seq``, as the SDK sends);
        the decoded reply, or None when none came."""
        assert self.nc is not None
        if "session_id" in body:
            body = {**body, "seq": next(self.seq)}
        try:
            msg = await self.recorder.request(
                self.nc, self.name, subject, msgpack.packb(body), timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            return None
        try:
            reply = msgpack.unpackb(msg.data) if msg is not None else None
        except Exception:
            return None
        return reply if isinstance(reply, dict) else None

    def session(self) -> str:
        """A fresh session id (a new run of the process owning an instance)."""
        return f"{self.name}-{secrets.token_hex(6)}"

    async def run(self, own: list[tuple[str, str]]) -> None:
        """Run an actor for each of ``own`` and for each shared id, plus discoveries."""
        shared = [(SHARED_SERVICE, f"shared-{k}") for k in range(SHARED_IDS)]
        async with asyncio.TaskGroup() as tasks:
            for service, instance in [*own, *shared]:
                tasks.create_task(self.actor(service, instance))
            tasks.create_task(self.discoveries([service for service, _ in own]))

    async def discoveries(self, services: list[str]) -> None:
        """Discover now and then, any status or the default."""
        choices = [*services, SHARED_SERVICE, "sdk"]
        while await self.phase.sleep(self.rng.uniform(1.0, 3.0)):
            if self.phase.steady:
                continue
            body: dict[str, Any] = {"service_name": self.rng.choice(choices)}
            if self.rng.random() < 0.5:
                body["status"] = "ANY"
            await self.call(DISCOVER, body)

    async def actor(self, service: str, instance: str) -> None:
        """Register, keep alive, end one way or another; again, until stopping."""
        session = self.session()
        timings = self.timings
        while not self.phase.stopping.is_set():
            if self.phase.steady:
                await self.phase.stopping.wait()
                return
            body = {"service_name": service, "instance_id": instance, "session_id": session}
            reply = await self.call(REGISTER, {**body, "metadata": {"client": self.name}})
            status = reply.get("status") if reply else None
            if status == 409 and reply is not None:
                wait = min(float(reply.get("retry_after") or 1.0), 3.0)
                await self.phase.sleep(wait + self.rng.uniform(0.0, 0.5))
                continue
            if status not in (200, 201) or reply is None:
                await self.phase.sleep(self.rng.uniform(0.2, 1.0))
                continue
            holder = reply.get("heartbeat_subject")
            while True:
                ended = await self.live(body, holder, self.rng.uniform(3.0, 20.0))
                if ended != "lifetime":
                    break
                choice = self.rng.random()
                if choice < 0.2:
                    # Stall past unhealthy_after (maybe past offline_after), then carry on.
                    stall = self.rng.uniform(0.5, 2.5) * timings.unhealthy_after
                    if not await self.phase.sleep(stall) or self.phase.steady:
                        break
                    continue
                if choice < 0.6:
                    await self.call(DEREGISTER, body)
                    await self.phase.sleep(self.rng.uniform(0.2, 3.0))
                else:
                    # Abandon it: it expires; maybe we come back as a new run.
                    await self.phase.sleep(self.rng.uniform(1.0, 2.0 * timings.offline_after))
                break
            if ended in ("superseded",) or self.rng.random() < 0.5:
                session = self.session()

    async def live(self, body: dict[str, Any], holder: Any, lifetime: float) -> str:
        """Heartbeat until the lifetime ends (never, once steady), the instance is lost
        (404), taken (403), or the run stops; says which."""
        loop = asyncio.get_running_loop()
        # A little more often than the interval, so a healthy actor's answered
        # heartbeats are never further apart than the interval.
        cadence = 0.8 * self.timings.heartbeat_interval
        end = loop.time() + lifetime
        beat = loop.time()
        while True:
            if not self.phase.steady and loop.time() >= end:
                return "lifetime"
            beat = max(beat + cadence, loop.time())
            if not await self.phase.sleep(beat - loop.time()):
                return "stopped"
            reply = None
            if self.holder_subjects and isinstance(holder, str):
                reply = await self.call(holder, body, HOLDER_TIMEOUT)
            if reply is None:
                reply = await self.call(HEARTBEAT, body)
            if reply is None:
                continue
            holder = reply.get("heartbeat_subject", holder)
            if reply.get("status") == 404:
                return "lost"
            if reply.get("status") == 403:
                return "superseded"


@dataclass
class SdkClient(Client):
    """A few instances kept alive by ``aegis.sdk.ServiceClient``; now and then one is
    deregistered and registered again, and now and then the client reopens as a new
    session (a restarted service)."""

    servers: list[str] = field(default_factory=list)
    instances: int = 2

    def __post_init__(self) -> None:
        self.ids = [f"{self.name}-{k}" for k in range(self.instances)]
        self.config = ClientConfig(
            timeout=CLIENT_TIMEOUT,
            retries=3,
            backoff_base=0.1,
            backoff_max=1.0,
            breaker_threshold=5,
            breaker_cooldown=3.0,
        )

    async def _connect(self, servers: Any, **options: Any) -> RecordingConnection:
        nc = await aegis_connect(servers, **options)
        return RecordingConnection(nc, self.recorder, self.name)

    async def run(self) -> None:
        """Open, keep the instances, reopen as a new session now and then; until stopping."""
        while not self.phase.stopping.is_set():
            client = ServiceClient(self.servers, self.config, name=self.name, connect=self._connect)
            try:
                await client.connect()
                await self._session(client)
            except AegisError:
                await self.phase.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.close()  # deregisters what it holds

    async def _session(self, client: ServiceClient) -> None:
        for instance in self.ids:
            await self._register(client, instance)
        reopen_at = asyncio.get_running_loop().time() + self.rng.uniform(10.0, 25.0)
        while await self.phase.sleep(self.rng.uniform(2.0, 6.0)):
            if self.phase.steady:
                continue
            if asyncio.get_running_loop().time() > reopen_at:
                return
            instance = self.rng.choice(self.ids)
            with contextlib.suppress(AegisError):
                if self.rng.random() < 0.5:
                    await client.discover("sdk", status="ANY")
                await client.deregister("sdk", instance)
            await self.phase.sleep(self.rng.uniform(0.2, 2.0))
            await self._register(client, instance)

    async def _register(self, client: ServiceClient, instance: str) -> None:
        """Register (waiting out a previous session's stale registration), or give up
        until the next round if the routers cannot be reached."""
        while not self.phase.stopping.is_set():
            try:
                await client.register("sdk", instance, {"client": self.name}, wait_if_taken=15.0)
                return
            except DuplicateInstanceError:
                continue
            except AegisError:
                if not await self.phase.sleep(self.rng.uniform(0.5, 1.5)):
                    return
