"""``ServiceClient``: what a service uses to register itself and find others.

The facade only validates input and delegates: ``transport`` talks to the
router, ``heartbeats`` keeps registered instances alive, ``watch`` follows
change events.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aegis.connect.connection import connect as connect_to_nats
from aegis.connect.log import get_logger
from aegis.wire.messages import (
    DEREGISTER,
    DISCOVER,
    DiscoverRequest,
    Instance,
    InstanceRequest,
    RegisterRequest,
    error_details,
)
from pydantic import BaseModel, ValidationError

from .config import ClientConfig
from .errors import (
    AegisError,
    InstanceNotFoundError,
    RegistrationValidationError,
    from_reply,
)
from .heartbeats import Heartbeats, Key
from .registrations import RegisteredInstance, RegistrationState
from .resolver import RESYNC_EVERY, Resolver, Strategy
from .serving import STOP_SIGNALS, wait_for_signal
from .transport import (
    Connector,
    Monotonic,
    Rand,
    Sleep,
    Transport,
    WallClock,
    instance_of,
    utc_now,
)
from .watch import EventStream

log = get_logger("aegis.sdk")

M = TypeVar("M", bound=BaseModel)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# Deregistrations on close get one short try each: closing must not hang.
CLOSE_TIMEOUT = 2.0


class ServiceClient:
    """Registers service instances with an AegisIPC router over NATS and keeps them alive.

    Use as ``async with ServiceClient(nats_url=...) as client:``. One client
    has one random session id; the router ties every instance this client
    registers to it, so a retried registration is answered 200, not 409, and
    nobody else can heartbeat or deregister them. Each registered instance
    gets a background heartbeat at the router's interval; leaving the
    ``async with`` block deregisters them all.

    Requests about a service go on its own subjects, ``ipc.svc.<service>.<verb>`` (wire
    contract v1.2), so NATS permissions can limit which services a credential speaks
    for; a refusal is ``PermissionDeniedError`` at once. For a router older than that,
    ``ClientConfig(shared_subjects=True)`` sends on the shared ``ipc.service.*`` ones.

    ``nats_url`` is one server, several comma-separated
    (``"nats://a:4222,nats://b:4222"``, as ``AEGIS_NATS_URL`` takes them) or a list.

    The keyword-only ``connect``, ``sleep``, ``clock`` (wall time),
    ``monotonic`` and ``rand`` replace how the client reaches NATS, waits,
    reads the time and draws jitter; services leave them alone, tests pass fakes.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] = DEFAULT_NATS_URL,
        config: ClientConfig | None = None,
        *,
        name: str = "aegis-sdk",
        connect: Connector = connect_to_nats,
        sleep: Sleep = asyncio.sleep,
        clock: WallClock = utc_now,
        monotonic: Monotonic = time.monotonic,
        rand: Rand = random.random,
    ) -> None:
        self.nats_url = nats_url
        self.config = config or ClientConfig()
        self.session_id = secrets.token_urlsafe(18)
        self._name = name
        self._clock = clock
        self._transport = Transport(
            self.config, connect=connect, sleep=sleep, monotonic=monotonic, rand=rand
        )
        self._heartbeats = Heartbeats(
            self._transport,
            self.session_id,
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
            rand=rand,
        )
        self._streams: set[EventStream] = set()
        self._resolvers: set[Resolver] = set()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def instances(self) -> Mapping[Key, RegisteredInstance]:
        """This client's instances by ``(service_name, instance_id)``, with their state."""
        return self._heartbeats.registrations

    async def connect(self) -> None:
        """Connect to NATS (retried with backoff); ``ServiceUnavailableError`` if it cannot.

        The error's code is ``NATS_AUTH_FAILED`` when NATS refused the credentials
        or TLS did not verify, else ``NATS_UNREACHABLE``. A ``config.auth`` naming
        a missing file raises ``ValueError`` at once.
        """
        await self._transport.open(self.nats_url, name=self._name, on_reconnect=self._reconnected)

    async def _reconnected(self) -> None:
        """NATS came back (maybe to a restarted router): re-register, reload every view."""
        for resolver in self._resolvers:
            resolver.resync()
        await self._heartbeats.reregister_all()

    async def close(self) -> None:
        """Stop heartbeats, deregister every instance still ours (one short try each),
        close NATS."""
        await self.deregister_all()
        for stream in list(self._streams):
            await stream.close()
        self._streams.clear()
        for resolver in list(self._resolvers):
            await resolver.close()
        self._resolvers.clear()
        await self._transport.close()

    async def serve_forever(
        self, signals: Iterable[signal.Signals] = STOP_SIGNALS
    ) -> signal.Signals:
        """Serve until SIGTERM or SIGINT (Ctrl-C), then deregister every instance of this
        client; returns the signal that came.

        Heartbeats run meanwhile. The instances are OFFLINE before it returns, so
        nobody is sent here any more while the service finishes what it has in
        hand; the connection stays open (resolvers, ``discover``) until the client
        closes. The signals' previous handlers are put back before deregistering:
        a second Ctrl-C stops the process at once. Call it from the main thread
        (Python delivers signals there only; elsewhere ``RuntimeError``).
        """
        received = await wait_for_signal(signals)
        await self._stop_serving(received)
        return received

    async def _stop_serving(self, received: signal.Signals) -> None:
        """Say which signal stopped the service, then deregister (also the sync client's)."""
        owned = sum(1 for reg in self.instances.values() if reg.is_ours)
        log.info("stop_signal_received", signal=received.name, instances=owned)
        await self.deregister_all()

    async def deregister_all(self) -> None:
        """Stop every heartbeat and take every instance still ours OFFLINE (one short try
        each, as on close); the connection stays open."""
        owned = await self._heartbeats.stop()
        if self._transport.connected:
            await asyncio.gather(*(self._leave(reg) for reg in owned))

    async def _leave(self, reg: RegisteredInstance) -> None:
        try:
            reply = await self._transport.send(
                self._transport.subject(DEREGISTER, reg.service_name),
                self._owner_body(*reg.key),
                CLOSE_TIMEOUT,
            )
            error = from_reply(reply)
            if error is not None and not isinstance(error, InstanceNotFoundError):
                raise error
            reg.state = RegistrationState.DEREGISTERED
        except AegisError as exc:
            log.warning(
                "deregister_on_close_failed",
                service=reg.service_name,
                instance=reg.instance_id,
                error=str(exc),
            )

    async def register(
        self,
        service_name: str,
        instance_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        wait_if_taken: float = 0.0,
    ) -> Instance:
        """Register one instance, start its heartbeats, and return it as the router stored it.

        ``wait_if_taken``: if the instance id is still held by a stale
        registration (say, this service's previous run that crashed), wait up
        to this many seconds for it to expire and take it over, instead of
        failing with 409 at once.

        Raises ``RegistrationValidationError`` (400) before sending anything if
        the request breaks the contract, ``DuplicateInstanceError`` (409) if the
        instance is live under another session, ``StaleRequestError`` (409) if a
        later request of this client reached the router first, ``PermissionDeniedError``
        (403, at once, not retried) if NATS will not let these credentials publish on the
        service's subject ``ipc.svc.<service_name>.register``, ``RequestTimeoutError`` (504),
        ``ServiceUnavailableError`` (503) or ``CircuitOpenError`` otherwise.
        """
        request = _validated(
            RegisterRequest,
            service_name=service_name,
            instance_id=instance_id,
            metadata=metadata or {},
            timestamp=self._clock().isoformat(),
            session_id=self.session_id,
            seq=self._heartbeats.next_seq(),
        )
        return await self._heartbeats.register(request, wait_if_taken=wait_if_taken)

    async def deregister(self, service_name: str, instance_id: str) -> Instance | None:
        """Stop heartbeating and take the instance OFFLINE; None if the router did not know it."""
        body = self._owner_body(service_name, instance_id)
        reg = await self._heartbeats.forget((service_name, instance_id))
        try:
            subject = self._transport.subject(DEREGISTER, service_name)
            reply = await self._transport.request(subject, body)
        except InstanceNotFoundError:
            return None
        if reg is not None:
            reg.state = RegistrationState.DEREGISTERED
        return instance_of(reply)

    async def discover(
        self, service_name: str, status: str = "ONLINE", *, include_maintenance: bool = False
    ) -> list[Instance]:
        """Instances of a service in ``status`` (ONLINE, UNHEALTHY, OFFLINE or ANY); those an
        operator put in maintenance only with ``include_maintenance``."""
        request = _validated(
            DiscoverRequest,
            service_name=service_name,
            status=status,
            include_maintenance=include_maintenance,
        )
        subject = self._transport.subject(DISCOVER, service_name)
        reply = await self._transport.request(subject, request)
        return list(reply.instances or [])

    async def resolver(
        self,
        service_name: str,
        *,
        where: Mapping[str, str | int | float | bool] | None = None,
        strategy: Strategy = "round_robin",
        resync_every: float = RESYNC_EVERY,
        cache_path: str | Path | None = None,
    ) -> Resolver:
        """A local, always-current view of ``service_name``'s ONLINE instances, filtered by
        ``where`` (exact match on top-level metadata keys, ANDed).

        Loads the first snapshot before returning (raises like ``discover`` if the
        router cannot be reached). ``resolver.pick()`` then chooses an instance
        with no round trip: ``round_robin`` (default), ``random``, ``weighted`` (a
        numeric ``weight`` in metadata, default 1) or a function of the list.

        ``cache_path``: keep a copy of the view in this file, so a resolver made
        while the router cannot be reached starts from it (marked stale) instead
        of raising.
        """
        _validated(DiscoverRequest, service_name=service_name, metadata=dict(where or {}))

        async def snapshot() -> list[Instance]:
            # Everything: the view must know an instance in maintenance to follow its
            # events (and to say why nothing can be picked).
            return await self.discover(service_name, "ANY", include_maintenance=True)

        resolver = Resolver(
            self._transport.connection(),
            service_name,
            snapshot,
            where=where,
            strategy=strategy,
            resync_every=resync_every,
            cache_path=cache_path,
        )
        await resolver.start()
        self._resolvers.add(resolver)
        resolver.on_close(self._resolvers.discard)
        return resolver

    def watch(self, service_name: str | None = None) -> EventStream:
        """Change events of ``service_name`` (None: every service) as they happen."""
        stream = EventStream(self._transport.connection(), service_name)
        self._streams.add(stream)
        return stream

    def _owner_body(self, service_name: str, instance_id: str) -> InstanceRequest:
        return _validated(
            InstanceRequest,
            service_name=service_name,
            instance_id=instance_id,
            session_id=self.session_id,
            seq=self._heartbeats.next_seq(),
        )


def _validated(model: type[M], **fields: Any) -> M:
    """Build a wire model, or raise the SDK's 400 with the same details the router gives."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise RegistrationValidationError("request failed validation", error_details(exc)) from exc
