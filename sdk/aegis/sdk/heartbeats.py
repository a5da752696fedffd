"""Keeping this client's instances registered: register, heartbeat, register again.

Each registered instance gets one background loop that heartbeats it at the
interval the router announced, to the router holding its lease when the
router named one (falling back to the shared subject when that router does
not answer). A failed heartbeat is logged and kept in the
instance's ``last_error``, never raised into the service. When the router has
forgotten the instance (404: it restarted empty, or the instance expired) or
NATS reconnected, the instance is registered again after a random pause of up
to one interval, so a fleet does not stampede a restarted router. When
another session owns the instance now (403 on a heartbeat, 409 on registering
again), the instance is ``SUPERSEDED``: its loop stops, for good.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aegis.connect.log import get_logger
from aegis.connect.tasks import cancel
from aegis.wire.messages import (
    HEARTBEAT,
    REGISTER,
    Instance,
    InstanceRequest,
    RegisterRequest,
    Reply,
)

from .errors import (
    AegisError,
    DuplicateInstanceError,
    InstanceNotFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    SessionMismatchError,
    StaleRequestError,
    from_reply,
)
from .registrations import DEFAULT_HEARTBEAT_INTERVAL, RegisteredInstance, RegistrationState
from .transport import Monotonic, Rand, Sleep, Transport, WallClock, instance_of

log = get_logger("aegis.sdk.heartbeats")

# The router's sweeper applies a passed deadline within one tick (<= 1 s).
TAKEOVER_MARGIN = 0.5
SHARED_TRIES = 3  # tries on the shared subject for an instance whose last beat failed

Key = tuple[str, str]


class Heartbeats:
    """Registers instances under one session and keeps them alive until told to stop.

    ``sleep`` paces the loops and waits, ``clock`` stamps contacts and requests,
    ``monotonic`` bounds ``wait_if_taken``, ``rand`` draws the re-registration pause.
    """

    def __init__(
        self,
        transport: Transport,
        session_id: str,
        *,
        sleep: Sleep,
        clock: WallClock,
        monotonic: Monotonic,
        rand: Rand,
    ) -> None:
        self._transport = transport
        self._session_id = session_id
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self._rand = rand
        # The session's request order (wire ``seq``): a request of ours delayed in the
        # network cannot undo a later registration or deregistration of ours.
        self._seq = itertools.count(1)
        self._registrations: dict[Key, RegisteredInstance] = {}
        self._loops: dict[Key, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Set while stop() waits: a loop whose cancellation was lost (Python 3.11's
        # asyncio.wait_for can swallow one, and nats-py's request uses it) still
        # ends at its next turn instead of keeping stop() waiting for ever.
        self._stopping = False
        # Lease holders' subjects NATS refused to carry for these credentials: the
        # service's own heartbeat subject is used instead, without trying them again.
        self._refused: set[str] = set()

    def next_seq(self) -> int:
        """The ``seq`` for this session's next request (each request a higher one)."""
        return next(self._seq)

    @property
    def registrations(self) -> Mapping[Key, RegisteredInstance]:
        """A read-only view of every instance registered and not yet forgotten."""
        return MappingProxyType(self._registrations)

    async def register(self, request: RegisterRequest, *, wait_if_taken: float) -> Instance:
        """Register (retried by the transport), waiting out a stale holder; start its loop."""
        started = self._monotonic()
        deadline = started + wait_if_taken
        first_seen: Instance | None = None
        while True:
            try:
                subject = self._transport.subject(REGISTER, request.service_name)
                reply = await self._transport.request(subject, request)
                break
            except DuplicateInstanceError as exc:
                first_seen = first_seen or exc.existing
                wait = (exc.retry_after or 0.0) + TAKEOVER_MARGIN
                if exc.retry_after is None or self._monotonic() + wait > deadline:
                    if _heartbeated_since(first_seen, exc.existing):
                        raise _still_running(exc, self._monotonic() - started) from None
                    raise
                log.info(
                    "waiting_for_stale_registration",
                    service=request.service_name,
                    instance=request.instance_id,
                    seconds=round(wait, 3),
                )
                await self._sleep(wait)
        instance = instance_of(reply)
        self._track(request.metadata, instance, reply)
        return instance

    async def forget(self, key: Key) -> RegisteredInstance | None:
        """Stop heartbeating ``key`` and drop it; what was known about it, if anything."""
        await cancel(self._loops.pop(key, None))
        return self._registrations.pop(key, None)

    async def stop(self) -> list[RegisteredInstance]:
        """Stop every loop and forget every instance; those this client still owns."""
        tasks = [*self._loops.values(), *self._background]
        self._loops.clear()
        self._stopping = True
        try:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._stopping = False
        owned = [reg for reg in self._registrations.values() if reg.is_ours]
        self._registrations.clear()
        return owned

    async def reregister_all(self) -> None:
        """NATS came back (maybe a new server, maybe a restarted router): register all again."""
        owned = [reg for reg in self._registrations.values() if reg.is_ours]
        log.info("nats_reconnected", instances=len(owned))
        for reg in owned:
            task = asyncio.create_task(self._reregister(reg))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _track(self, metadata: dict[str, Any], instance: Instance, reply: Reply) -> None:
        key = (instance.service_name, instance.instance_id)
        reg = self._registrations.get(key)
        if reg is None or not reg.is_ours:
            reg = RegisteredInstance(key[0], key[1], metadata, instance)
            self._registrations[key] = reg
        reg.heartbeat_interval = reply.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
        reg.heartbeat_subject = reply.heartbeat_subject
        reg.contact(instance, self._clock())
        loop = self._loops.get(key)
        if loop is None or loop.done():
            self._loops[key] = asyncio.create_task(
                self._beat(reg), name=f"aegis-heartbeat-{key[0]}-{key[1]}"
            )

    async def _beat(self, reg: RegisteredInstance) -> None:
        """Heartbeat until cancelled or superseded; never raises into the service."""
        body = InstanceRequest(
            service_name=reg.service_name, instance_id=reg.instance_id, session_id=self._session_id
        )
        while reg.is_ours and not self._stopping:
            await self._sleep(reg.heartbeat_interval)
            timeout = min(self._transport.config.timeout, reg.heartbeat_interval)
            try:
                beat = body.model_copy(update={"seq": self.next_seq()})
                reply = await self._send_heartbeat(reg, beat, timeout)
                error = from_reply(reply)
                if error is None:
                    self._recovered(reg)
                    reg.contact(instance_of(reply), self._clock())
                    continue
            except AegisError as exc:
                error = exc
            if isinstance(error, StaleRequestError):
                continue  # a later request of ours (a re-registration) holds
            if isinstance(error, SessionMismatchError):
                self._supersede(reg, error)
            elif isinstance(error, InstanceNotFoundError):
                # Forgotten: the router restarted empty, or the instance expired.
                log.warning(
                    "heartbeat_rejected",
                    service=reg.service_name,
                    instance=reg.instance_id,
                    status=error.status_code,
                )
                await self._reregister(reg)
            else:
                self._fail(reg, "heartbeat_failed", error)

    async def _send_heartbeat(
        self, reg: RegisteredInstance, body: InstanceRequest, reply_within: float
    ) -> Reply:
        """To the lease holder's own subject if known, else (or if it is silent, or NATS
        will not carry it for these credentials) the service's heartbeat subject, which
        any router answers.

        The direct try gets half the time: a dead router's subject has no
        responders, which NATS says at once; the other half is the fallback's.
        """
        direct = reg.heartbeat_subject
        if direct is not None and direct not in self._refused:
            try:
                reply = await self._transport.send(direct, body, reply_within / 2)
            except (ServiceUnavailableError, RequestTimeoutError, PermissionDeniedError) as exc:
                if isinstance(exc, PermissionDeniedError):
                    self._refused.add(direct)
                log.info(
                    "heartbeat_fallback",
                    service=reg.service_name,
                    instance=reg.instance_id,
                    subject=direct,
                    error=str(exc),
                )
                reg.heartbeat_subject = None
            else:
                if reply.ok:
                    reg.heartbeat_subject = reply.heartbeat_subject
                return reply
        reply = await self._send_shared(reg, body, reply_within)
        if reply.ok:
            reg.heartbeat_subject = reply.heartbeat_subject
        return reply

    async def _send_shared(
        self, reg: RegisteredInstance, body: InstanceRequest, reply_within: float
    ) -> Reply:
        """To the subject every router answers in its queue group (the service's own,
        or with ``shared_subjects`` the v1 shared one): once, or, when the last beat
        failed too, up to ``SHARED_TRIES`` times within the same time.

        A router that cannot send (a one-way partition) or is paused stays in the
        queue group until NATS drops its connection, and swallows the requests it is
        handed; each try is a fresh draw. Only an instance already in trouble
        retries, and only on silence (a 503 is an answer), so an overloaded router
        is not sent more for each instance it is slow to answer.
        """
        shared = self._transport.subject(HEARTBEAT, reg.service_name)
        tries = SHARED_TRIES if reg.failures else 1
        for attempt in range(1, tries):
            try:
                return await self._transport.send(shared, body, reply_within / tries)
            except RequestTimeoutError:
                log.info(
                    "heartbeat_retried",
                    service=reg.service_name,
                    instance=reg.instance_id,
                    attempt=attempt,
                )
                body = body.model_copy(update={"seq": self.next_seq()})
        return await self._transport.send(shared, body, reply_within / tries)

    async def _reregister(self, reg: RegisteredInstance) -> None:
        """Register ``reg`` again after a random pause, so a fleet does not stampede."""
        reg.state = RegistrationState.REREGISTERING
        await self._sleep(self._rand() * reg.heartbeat_interval)
        if not self._owns(reg):
            return
        request = RegisterRequest(
            service_name=reg.service_name,
            instance_id=reg.instance_id,
            metadata=reg.metadata,
            timestamp=self._clock().isoformat(),
            session_id=self._session_id,
            seq=self.next_seq(),
        )
        try:
            reply = await self._transport.send(
                self._transport.subject(REGISTER, reg.service_name),
                request,
                self._transport.config.timeout,
            )
            error = from_reply(reply)
            if error is None:
                if self._owns(reg):
                    self._track(reg.metadata, instance_of(reply), reply)
                    log.info("reregistered", service=reg.service_name, instance=reg.instance_id)
                return
        except AegisError as exc:
            error = exc
        if isinstance(error, StaleRequestError):
            return  # a later request of ours reached the router first, and holds
        if isinstance(error, DuplicateInstanceError):
            self._supersede(reg, error)
        else:
            self._fail(reg, "reregister_failed", error)

    def _recovered(self, reg: RegisteredInstance) -> None:
        """A heartbeat got through after failed ones: say the trouble is over, once."""
        if not reg.failures:
            return
        silent = None
        if reg.last_contact_at is not None:
            silent = round((self._clock() - reg.last_contact_at).total_seconds(), 1)
        log.info(
            "heartbeat_recovered",
            service=reg.service_name,
            instance=reg.instance_id,
            failures=reg.failures,
            seconds_without_contact=silent,
        )

    def _owns(self, reg: RegisteredInstance) -> bool:
        """False once ``reg`` was deregistered, forgotten or superseded (e.g. during a pause)."""
        return self._registrations.get(reg.key) is reg and reg.is_ours and not self._stopping

    def _supersede(self, reg: RegisteredInstance, error: AegisError) -> None:
        """Another session holds the instance: stop its loop and say so, once."""
        if not reg.is_ours:
            return
        reg.supersede(error.message)  # the router's words: no advice for a new registration
        loop = self._loops.pop(reg.key, None)
        if loop is not None and loop is not asyncio.current_task():
            loop.cancel()
        log.warning(
            "instance_superseded",
            service=reg.service_name,
            instance=reg.instance_id,
            status=error.status_code,
            error=error.message,
        )

    def _fail(self, reg: RegisteredInstance, event: str, error: AegisError) -> None:
        reg.fail(str(error))
        log.warning(
            event,
            service=reg.service_name,
            instance=reg.instance_id,
            error=str(error),
            failures=reg.failures,
        )


def _heartbeated_since(before: Instance | None, now: Instance | None) -> bool:
    """Whether the holder's owner heartbeated between two looks at it: it is alive."""
    if before is None or now is None:
        return False
    return now.last_heartbeat_at != before.last_heartbeat_at


def _still_running(exc: DuplicateInstanceError, waited: float) -> DuplicateInstanceError:
    """The 409 after waiting, saying why waiting longer would not help."""
    return DuplicateInstanceError(
        f"instance {exc.existing.instance_id if exc.existing else '?'} is still held after "
        f"waiting {waited:.1f}s: its owner keeps heartbeating it, so another copy of it is "
        "running; stop that copy, or give this one another instance id",
        exc.existing,
        code=exc.code,
        retry_after=exc.retry_after,
    )
