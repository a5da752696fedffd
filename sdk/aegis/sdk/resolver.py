"""A caller's local, always-current view of one service's healthy instances.

``await client.resolver("payments", where={"zone": "eu-1"})`` subscribes to
the service's change events first, then loads a snapshot (``discover``), then
applies the events in order. Each instance's ``version`` grows by one per
change event, so a missed or reordered event shows as a gap and the snapshot
is loaded again; so it is after a NATS reconnect, and every
``resync_every`` seconds as a safety net. ``pick()`` chooses one instance
from memory, with no round trip. When the router cannot be reached the last
view is kept and marked ``stale``, and ``pick()`` goes on working from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from aegis.connect.log import get_logger
from aegis.connect.tasks import cancel
from aegis.wire.messages import (
    ROUTER_STARTED_SUBJECT,
    ChangeEvent,
    EventKind,
    FilterValue,
    Instance,
    InstanceStatus,
    events_subject,
    matches,
)
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import AegisError
from .transport import NatsConnection
from .watch import parse_event

log = get_logger("aegis.sdk.resolver")

Strategy = Literal["round_robin", "random", "weighted"] | Callable[[list[Instance]], Instance]
ChangeCallback = Callable[[list[Instance]], Awaitable[None] | None]
Snapshot = Callable[[], Awaitable[list[Instance]]]

RESYNC_EVERY = 30.0
RETRY_EVERY = 1.0


class NoHealthyInstanceError(AegisError):
    """``pick()`` found nothing to pick; ``reason`` says why.

    ``no_instances``: the service has no ONLINE instance; ``in_maintenance``:
    every ONLINE one is in maintenance; ``filtered_out``: some are ONLINE, but
    none matches ``where``; ``stale_empty``: the router could not be reached and
    the last view held nothing.
    """

    status_code = 503

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, code="NO_HEALTHY_INSTANCE")
        self.reason = reason


class Resolver:
    """Follows one service; ``instances()`` and ``pick()`` read memory only.

    Made by ``ServiceClient.resolver``; ``close()`` (or closing the client)
    stops it.
    """

    def __init__(
        self,
        nc: NatsConnection,
        service_name: str,
        snapshot: Snapshot,
        *,
        where: Mapping[str, FilterValue] | None = None,
        strategy: Strategy = "round_robin",
        resync_every: float = RESYNC_EVERY,
        rand: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        cache_path: str | Path | None = None,
    ) -> None:
        self.service_name = service_name
        self.where = dict(where or {})
        self._nc = nc
        self._snapshot = snapshot
        self._strategy = strategy
        self._resync_every = resync_every
        self._rand = rand
        self._monotonic = monotonic
        self._cache = ViewCache(Path(cache_path)) if cache_path is not None else None
        self._all: dict[str, Instance] = {}  # every instance of the service, any status
        self._healthy: list[Instance] = []
        self._turn = itertools.count()
        self._callbacks: list[ChangeCallback] = []
        self._closed: list[Callable[[Resolver], None]] = []
        self._callback_tasks: set[asyncio.Future[None]] = set()
        self._subs: list[Subscription] = []
        self._pending: list[ChangeEvent] | None = None  # events while a snapshot loads
        self._task: asyncio.Task[None] | None = None
        self._resync_now = asyncio.Event()
        self._current_at: float | None = None
        self.stale = True
        self.resyncs = 0

    async def start(self) -> None:
        """Subscribe, load the first snapshot (raises if the router cannot be reached)."""
        self._subs = [
            await self._nc.subscribe(events_subject(self.service_name), cb=self._on_message),
            await self._nc.subscribe(ROUTER_STARTED_SUBJECT, cb=self._on_router_started),
        ]
        await self._nc.flush()
        try:
            await self._load()
        except AegisError as exc:
            saved = self._cache.read() if self._cache is not None else None
            if saved is None:
                await self.close()
                raise
            # Started while the router is away: the copy on disk, marked stale.
            log.warning("resolver_from_cache", service=self.service_name, error=str(exc))
            self._all = {i.instance_id: i for i in saved}
            self._publish()
        self._task = asyncio.create_task(self._keep_current(), name="aegis-resolver")

    def on_close(self, callback: Callable[[Resolver], None]) -> None:
        """Call ``callback(self)`` once closed (the client forgets it then)."""
        self._closed.append(callback)

    async def close(self) -> None:
        """Stop following the service; the last view stays readable."""
        for callback in self._closed:
            callback(self)
        self._closed.clear()
        task, self._task = self._task, None
        await cancel(task)
        subs, self._subs = self._subs, []
        for sub in subs:
            if not self._nc.is_closed:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    @property
    def age(self) -> float | None:
        """Seconds since the view was last known current (None before the first load)."""
        if self._current_at is None:
            return None
        return self._monotonic() - self._current_at

    def instances(self) -> list[Instance]:
        """The ONLINE instances matching ``where``, sorted by instance id."""
        return list(self._healthy)

    def pick(self) -> Instance:
        """One healthy instance, chosen by the strategy; ``NoHealthyInstanceError`` if none."""
        healthy = self._healthy
        if not healthy:
            raise self._why_empty()
        strategy = self._strategy
        if strategy == "round_robin":
            return healthy[next(self._turn) % len(healthy)]
        if strategy == "random":
            return healthy[int(self._rand() * len(healthy))]
        if strategy == "weighted":
            return self._weighted(healthy)
        assert callable(strategy)
        return strategy(healthy)

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(instances)`` after each change of the healthy view."""
        self._callbacks.append(callback)

    def resync(self) -> None:
        """Load the snapshot again soon (the client calls this after a NATS reconnect)."""
        self._resync_now.set()

    async def _on_router_started(self, msg: Msg) -> None:
        self.resync()

    def _weighted(self, healthy: list[Instance]) -> Instance:
        weights = [_weight(i) for i in healthy]
        total = sum(weights)
        if total <= 0:
            return healthy[int(self._rand() * len(healthy))]
        point = self._rand() * total
        for instance, weight in zip(healthy, weights, strict=True):
            point -= weight
            if point < 0:
                return instance
        return healthy[-1]

    def _why_empty(self) -> NoHealthyInstanceError:
        service = self.service_name
        if self.stale:
            return NoHealthyInstanceError(
                f"the router could not be reached and the last view of {service!r} "
                "held no healthy instance",
                "stale_empty",
            )
        online = [i for i in self._all.values() if i.status is InstanceStatus.ONLINE]
        if online and all(i.maintenance is not None for i in online):
            return NoHealthyInstanceError(
                f"every ONLINE instance of {service!r} is in maintenance", "in_maintenance"
            )
        if online:
            return NoHealthyInstanceError(
                f"{len(online)} ONLINE instance(s) of {service!r}, none matching {self.where}",
                "filtered_out",
            )
        return NoHealthyInstanceError(f"no ONLINE instance of {service!r}", "no_instances")

    async def _keep_current(self) -> None:
        """Reload on a gap, a reconnect, a failure (every second), and periodically."""
        while True:
            wait = RETRY_EVERY if self.stale else self._resync_every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync_now.wait(), wait)
            self._resync_now.clear()
            try:
                await self._load()
            except AegisError as exc:
                if not self.stale:
                    log.warning("resolver_stale", service=self.service_name, error=str(exc))
                self.stale = True

    async def _load(self) -> None:
        """Snapshot, then the events that came meanwhile (those it already holds skipped)."""
        self._pending = []
        try:
            instances = await self._snapshot()
        except BaseException:
            pending, self._pending = self._pending, None
            for event in pending:
                self._apply(event)
            raise
        pending, self._pending = self._pending, None
        self._all = {i.instance_id: i for i in instances}
        self.resyncs += 1
        self.stale = False
        self._current_at = self._monotonic()
        for event in pending:
            self._apply(event)
        self._publish()

    async def _on_message(self, msg: Msg) -> None:
        event = parse_event(msg)
        if event is None:
            return
        if self._pending is not None:
            self._pending.append(event)
            return
        if self._apply(event):
            self._publish()

    def _apply(self, event: ChangeEvent) -> bool:
        """Apply one event; False if it changed nothing. A gap asks for a snapshot."""
        instance = event.instance
        known = self._all.get(instance.instance_id)
        version = instance.version
        if version is not None and known is not None and known.version is not None:
            if version <= known.version:
                # Already applied (the snapshot had it) or older; unless the router
                # started its versions afresh (a memory store) with a new registration.
                renewed = (
                    event.event is EventKind.REGISTERED
                    and instance.registered_at > known.registered_at
                )
                if not renewed:
                    return False
            elif version > known.version + 1:
                self._gap(instance, known.version)
        elif version is not None and known is None and event.event is not EventKind.REGISTERED:
            self._gap(instance, None)
        if event.event is EventKind.REMOVED:
            self._all.pop(instance.instance_id, None)
        else:
            self._all[instance.instance_id] = instance
        self._current_at = self._monotonic()
        return True

    def _gap(self, instance: Instance, known: int | None) -> None:
        log.info(
            "resolver_gap",
            service=self.service_name,
            instance=instance.instance_id,
            known_version=known,
            event_version=instance.version,
        )
        self._resync_now.set()

    def _publish(self) -> None:
        healthy = sorted(
            (
                i
                for i in self._all.values()
                if i.status is InstanceStatus.ONLINE
                and i.maintenance is None
                and matches(i.metadata, self.where)
            ),
            key=lambda i: i.instance_id,
        )
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if self._cache is not None and not self.stale:
            # Only when the view changed: a disk write per event would stall the loop.
            self._cache.write(list(self._all.values()))
        for callback in self._callbacks:
            try:
                result = callback(list(healthy))
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._callback_tasks.add(task)
                    task.add_done_callback(self._callback_tasks.discard)
            except Exception as exc:  # a caller's bug must not stop the view
                log.warning("resolver_callback_failed", service=self.service_name, error=repr(exc))


class ViewCache:
    """A resolver's view on disk, so a caller starting while the router is away has one.

    Written whole to a temporary file and renamed over the old one, so a crash
    never leaves half a view; unreadable or foreign files are ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, instances: list[Instance]) -> None:
        """Replace the saved view (a failure is logged, never raised)."""
        body = [i.model_dump(mode="json") for i in instances]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".tmp")
            partial.write_text(json.dumps(body))
            partial.replace(self.path)
        except OSError as exc:
            log.warning("resolver_cache_write_failed", path=str(self.path), error=str(exc))

    def read(self) -> list[Instance] | None:
        """The saved view, or None if there is none (or it cannot be read)."""
        try:
            return [Instance.model_validate(i) for i in json.loads(self.path.read_text())]
        except (OSError, ValueError, TypeError) as exc:
            log.info("resolver_cache_unreadable", path=str(self.path), error=str(exc))
            return None


def _weight(instance: Instance) -> float:
    value: Any = instance.metadata.get("weight", 1)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 1.0
    return max(0.0, float(value))
