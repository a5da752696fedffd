"""The REST API's instance listings as JSON text, without building a model per instance.

Building ``Instance`` models, the response model around them and dumping it
all was most of a detail request's time (docs/performance.md). The same
bytes come from ``InstanceRecord.to_public_map`` through the dumps Sanic's
``json()`` uses; and an instance's text is kept between requests while nothing
it shows changes. A steady heartbeat changes only ``last_heartbeat_at`` (a
contact held in memory, shown on a fresh copy of the record each time): its
stamp is put in the kept text in place of the old one.
"""

from __future__ import annotations

from collections.abc import Iterable

from aegis.router.domain import InstanceRecord, iso
from sanic.response import json_dumps

# Instances whose text is kept (a few hundred bytes each); past this, all are
# dropped and kept afresh as requests ask for them. Bounds the memory the texts
# of removed instances hold.
KEPT_TEXTS = 10_000

_STAMP_KEY = '"last_heartbeat_at":'


class _Kept:
    """One instance's text, the record it shows, and where in it its contact stamp is."""

    __slots__ = ("end", "record", "start", "text")

    def __init__(self, record: InstanceRecord) -> None:
        self.record = record
        self.text: str = json_dumps(record.to_public_map())
        # The last such key is the instance's own: after it come only the version
        # (a number) and the maintenance mark, whose strings escape their quotes;
        # a metadata key of that name comes before it.
        self.start = self.text.rindex(_STAMP_KEY) + len(_STAMP_KEY)
        self.end = self.text.index('"', self.start + 1) + 1

    def shown_as(self, record: InstanceRecord) -> str | None:
        """``record``'s text made from this one, or None unless it differs from the kept
        record in its last contact at most."""
        seen = self.record
        if not (
            seen.metadata is record.metadata
            and seen.status is record.status
            and seen.version == record.version
            and seen.registered_at == record.registered_at
            and seen.maintenance == record.maintenance
        ):
            return None
        if seen.last_heartbeat_at != record.last_heartbeat_at:
            # json_dumps(iso(...)) without the call: iso's characters need no escape.
            stamp = f'"{iso(record.last_heartbeat_at)}"'
            self.text = self.text[: self.start] + stamp + self.text[self.end :]
            self.end = self.start + len(stamp)
        self.record = record
        return self.text


class InstanceTexts:
    """Each instance's JSON text as the REST API shows it, kept between requests.

    A kept text is used only for a record that shows the same: the same status,
    version, registration time and maintenance mark, and the very same metadata
    map (records share it, and nothing changes one in place: see
    ``InstanceRecord.to_public_map``); a different last contact is written into
    it. Anything else renders the record afresh, so no text is ever stale.
    """

    def __init__(self, limit: int = KEPT_TEXTS) -> None:
        self._services: dict[str, dict[str, _Kept]] = {}
        self._count = 0
        self._limit = limit

    @property
    def kept(self) -> int:
        """How many instances' texts are kept."""
        return self._count

    def text(self, record: InstanceRecord) -> str:
        """``record``'s public view as the JSON text Sanic's ``json()`` would write."""
        kept_here = self._services.get(record.service_name)
        kept = None if kept_here is None else kept_here.get(record.instance_id)
        if kept is not None:
            if kept.record is record:
                return kept.text
            text = kept.shown_as(record)
            if text is not None:
                return text
        elif self._count < self._limit:
            self._count += 1
        else:
            self._services.clear()
            self._count, kept_here = 1, None
        if kept_here is None:
            kept_here = self._services[record.service_name] = {}
        kept = kept_here[record.instance_id] = _Kept(record)
        return kept.text

    def service_detail(self, name: str, records: Iterable[InstanceRecord]) -> bytes:
        """The ``ServiceDetail`` body: ``name`` and ``records``' public views."""
        instances = ",".join(map(self.text, records))
        return f'{{"name":{json_dumps(name)},"instances":[{instances}]}}'.encode()

    def instances_response(
        self,
        records: list[InstanceRecord],
        total: int | None = None,
        next_cursor: str | None = None,
        version: str | None = None,
    ) -> bytes:
        """The ``InstancesResponse`` body: ``records``' public views, the count of all
        matches (None: ``records``'), the next page's cursor and the listing's version."""
        instances = ",".join(map(self.text, records))
        count = len(records) if total is None else total
        return (
            f'{{"instances":[{instances}],"total":{count},'
            f'"next_cursor":{json_dumps(next_cursor)},"version":{json_dumps(version)}}}'
        ).encode()
