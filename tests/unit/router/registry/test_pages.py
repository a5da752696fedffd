"""aegis.router.registry.pages: pages in order, totals of every match, and where to go on."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.registry.key_order import KeyOrder
from aegis.router.registry.pages import PageQuery, read_page
from aegis.router.store.port import Versioned
from aegis.wire.messages import InstanceStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ONLINE, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.OFFLINE


class Fleet:
    """Records by key, their order, and the service names: what ``read_page`` reads."""

    def __init__(self) -> None:
        self.records: dict[InstanceKey, InstanceRecord] = {}
        self.order = KeyOrder()

    def add(self, service: str, instance: str, status: InstanceStatus = ONLINE) -> None:
        record = InstanceRecord(service, instance, status, {}, T0, T0, None, 1)
        self.records[record.key] = record
        self.order.apply(record.key, record)

    def remove(self, service: str, instance: str) -> None:
        key = InstanceKey(service, instance)
        del self.records[key]
        self.order.apply(key, None)

    def names(self) -> list[str]:
        return sorted({k.service_name for k in self.records})

    def peek(self, key: InstanceKey) -> Versioned | None:
        record = self.records.get(key)
        return None if record is None else Versioned(record, 1)

    def page(self, **query: object) -> tuple[list[str], int, InstanceKey | None]:
        page = read_page(self.order, self.names, self.peek, PageQuery(**query))  # type: ignore[arg-type]
        return [f"{r.service_name}/{r.instance_id}" for r in page.records], page.total, page.last


def fleet() -> Fleet:
    f = Fleet()
    for service in ("api", "web"):
        for i in range(5):
            f.add(service, f"{service[0]}-{i}", OFFLINE if i == 3 else ONLINE)
    return f


def test_pages_walk_every_key_once_in_order() -> None:
    f = fleet()
    shown, after = [], None
    while True:
        page, total, after = f.page(limit=3, after=after)
        assert total == 10
        shown += page
        if after is None:
            break
    assert shown == [f"api/a-{i}" for i in range(5)] + [f"web/w-{i}" for i in range(5)]
    assert f.page() == (shown, 10, None)  # no limit: every match, no next page
    assert f.page(limit=10)[2] is None  # exactly a page's worth: no next page


def test_a_service_a_prefix_and_filters_narrow_the_page_and_the_total() -> None:
    f = fleet()
    assert f.page(service="web", limit=2) == (["web/w-0", "web/w-1"], 5, InstanceKey("web", "w-1"))
    assert f.page(service="web", id_prefix="w-4") == (["web/w-4"], 1, None)
    assert f.page(id_prefix="a-") == ([f"api/a-{i}" for i in range(5)], 5, None)
    assert f.page(service="nope") == ([], 0, None)
    offline = f.page(record_filter=lambda r: r.status is OFFLINE, limit=1)
    assert offline == (["api/a-3"], 2, InstanceKey("api", "a-3"))
    rest = f.page(record_filter=lambda r: r.status is OFFLINE, limit=1, after=offline[2])
    assert rest == (["web/w-3"], 2, None)  # total: every match, on every page
    assert f.page(key_filter=lambda k: k.instance_id.endswith("2")) == (
        ["api/a-2", "web/w-2"],
        2,
        None,
    )


def test_instances_that_come_and_go_between_pages_neither_shift_nor_repeat_others() -> None:
    f = fleet()
    first, _, after = f.page(limit=4)
    assert first == ["api/a-0", "api/a-1", "api/a-2", "api/a-3"]
    f.remove("api", "a-3")  # the cursor's own key goes
    f.remove("api", "a-1")  # one already shown goes
    f.add("api", "a-10")  # a key before the cursor comes: not on later pages
    f.add("api", "a-5")  # one after it comes: met in its place
    second, total, _ = f.page(limit=4, after=after)
    assert second == ["api/a-4", "api/a-5", "web/w-0", "web/w-1"]
    assert total == 10
