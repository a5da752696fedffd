"""The resolver's view: snapshot then events in order, gaps healed, picks from memory,
the last view kept (and marked stale) when the router cannot be reached."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from aegis.sdk import NoHealthyInstanceError, Resolver, ServiceUnavailableError
from aegis.wire.messages import Instance

from tests.support.wire import instance_body


def instance(name: str, version: int, status: str = "ONLINE", **metadata: Any) -> Instance:
    body = {**instance_body("pay", name, status), "metadata": metadata, "version": version}
    return Instance.model_validate(body)


class Events:
    """A NATS connection that only carries events: ``emit`` delivers one to subscribers."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.is_closed = False

    async def subscribe(self, subject: str, *, cb: Any) -> SimpleNamespace:
        self.callbacks.append(cb)

        async def unsubscribe() -> None:
            self.callbacks.remove(cb)

        return SimpleNamespace(unsubscribe=unsubscribe)

    async def flush(self) -> None:
        pass

    async def emit(self, event: str, inst: Instance, previous: str | None = None) -> None:
        body = {"event": event, "instance": inst.model_dump(mode="json")}
        if previous:
            body["previous_status"] = previous
        data = msgpack.packb(body)
        for cb in list(self.callbacks):
            await cb(SimpleNamespace(data=data, subject="ipc.events.service.pay"))


class Snapshots:
    """``discover`` as the resolver calls it: the next scripted answer each time."""

    def __init__(self, *answers: list[Instance] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> list[Instance]:
        self.calls += 1
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


async def resolver(snapshots: Snapshots, events: Events, **options: Any) -> Resolver:
    r = Resolver(events, "pay", snapshots, resync_every=3600, **options)
    await r.start()
    return r


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_snapshot_then_events_in_order() -> None:
    events = Events()
    r = await resolver(Snapshots([instance("p-1", 1), instance("p-2", 1)]), events)
    seen: list[list[str]] = []
    r.on_change(lambda view: seen.append([i.instance_id for i in view]))

    await events.emit("registered", instance("p-3", 1))
    await events.emit("status_changed", instance("p-1", 2, "UNHEALTHY"), "ONLINE")
    await events.emit("removed", instance("p-2", 2))

    assert [i.instance_id for i in r.instances()] == ["p-3"]
    assert seen == [["p-1", "p-2", "p-3"], ["p-2", "p-3"], ["p-3"]]
    assert (r.stale, r.resyncs) == (False, 1)
    await r.close()


async def test_an_event_the_snapshot_already_holds_changes_nothing() -> None:
    events = Events()
    r = await resolver(Snapshots([instance("p-1", 2, "UNHEALTHY")]), events)
    await events.emit("registered", instance("p-1", 1))  # late, older than the snapshot
    assert r.instances() == []
    await r.close()


async def test_a_missed_event_is_detected_and_healed_by_a_new_snapshot() -> None:
    events = Events()
    snapshots = Snapshots([instance("p-1", 1)], [instance("p-1", 3, "ONLINE")])
    r = await resolver(snapshots, events)

    # Version 2 (UNHEALTHY) never arrived: 1 -> 3 is a gap.
    await events.emit("status_changed", instance("p-1", 3), "UNHEALTHY")
    await settle()

    assert snapshots.calls == 2
    assert r.resyncs == 2
    assert [i.version for i in r.instances()] == [3]
    await r.close()


async def test_an_unknown_instance_changing_status_is_a_gap_too() -> None:
    events = Events()
    snapshots = Snapshots([], [instance("p-9", 2)])
    r = await resolver(snapshots, events)
    await events.emit("status_changed", instance("p-9", 2), "UNHEALTHY")
    await settle()
    assert snapshots.calls == 2
    await r.close()


async def test_round_robin_random_weighted_and_a_function() -> None:
    view = [instance("a", 1, weight=0), instance("b", 1, weight=3), instance("c", 1)]
    events = Events()
    rr = await resolver(Snapshots(view), events)
    assert [rr.pick().instance_id for _ in range(4)] == ["a", "b", "c", "a"]
    draws = iter([0.0, 0.99])
    rnd = await resolver(Snapshots(view), events, strategy="random", rand=lambda: next(draws))
    assert [rnd.pick().instance_id for _ in range(2)] == ["a", "c"]
    # weights 0, 3, 1 (default): a never, b three times as often as c.
    points = iter([0.0, 0.74, 0.76, 0.99])
    w = await resolver(Snapshots(view), events, strategy="weighted", rand=lambda: next(points))
    assert [w.pick().instance_id for _ in range(4)] == ["b", "b", "c", "c"]
    last = await resolver(Snapshots(view), events, strategy=lambda xs: xs[-1])
    assert last.pick().instance_id == "c"


async def test_where_filters_and_says_why_nothing_is_left() -> None:
    events = Events()
    r = await resolver(Snapshots([instance("p-1", 1, zone="us")]), events, where={"zone": "eu"})
    with pytest.raises(NoHealthyInstanceError) as caught:
        r.pick()
    assert caught.value.reason == "filtered_out"
    await events.emit("registered", instance("p-2", 1, zone="eu"))
    assert r.pick().instance_id == "p-2"

    empty = await resolver(Snapshots([]), events)
    with pytest.raises(NoHealthyInstanceError) as caught:
        empty.pick()
    assert caught.value.reason == "no_instances"


async def test_the_last_view_is_kept_and_marked_stale_while_the_router_is_away() -> None:
    events = Events()
    down = ServiceUnavailableError("no router is listening", code="NO_RESPONDERS")
    snapshots = Snapshots([instance("p-1", 1)], down, down, [instance("p-1", 1)])
    r = await resolver(snapshots, events)

    r.resync()
    await settle()
    assert r.stale
    assert r.pick().instance_id == "p-1", "picks go on from the last view"
    assert r.age is not None

    r.resync()
    await settle()
    r.resync()
    await settle()
    assert not r.stale
    await r.close()


async def test_nothing_at_all_while_stale_says_so() -> None:
    events = Events()
    down = ServiceUnavailableError("no router is listening", code="NO_RESPONDERS")
    r = await resolver(Snapshots([], down), events)
    r.resync()
    await settle()
    with pytest.raises(NoHealthyInstanceError) as caught:
        r.pick()
    assert caught.value.reason == "stale_empty"
    await r.close()


async def test_a_view_saved_on_disk_serves_a_resolver_started_while_the_router_is_away(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "views" / "pay.json"
    events = Events()
    first = await resolver(
        Snapshots([instance("p-1", 1), instance("p-2", 1)]), events, cache_path=cache
    )
    await events.emit("removed", instance("p-2", 2))
    await first.close()

    down = ServiceUnavailableError("no router is listening", code="NO_RESPONDERS")
    later = await resolver(Snapshots(down), events, cache_path=cache)
    assert later.stale
    assert [i.instance_id for i in later.instances()] == ["p-1"]
    await later.close()

    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ServiceUnavailableError):
        await resolver(Snapshots(down), events, cache_path=tmp_path / "garbage.json")
    with pytest.raises(ServiceUnavailableError):
        await resolver(Snapshots(down), events, cache_path=tmp_path / "none.json")


async def test_instances_in_maintenance_are_left_out_and_named_as_the_reason() -> None:
    events = Events()
    drained = Instance.model_validate(
        {
            **instance("p-1", 2).model_dump(mode="json"),
            "maintenance": {"reason": "kernel upgrade", "since": "2026-01-01T00:00:00.000Z"},
        }
    )
    r = await resolver(Snapshots([drained]), events)
    with pytest.raises(NoHealthyInstanceError) as caught:
        r.pick()
    assert caught.value.reason == "in_maintenance"
    await events.emit("maintenance", instance("p-1", 3))  # taken out again
    assert r.pick().instance_id == "p-1"
    await r.close()
