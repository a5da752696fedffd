"""Fetching what the console shows: the services summary and the pages on screen.

Every method raises ``ApiError`` as the client does; the app decides what a failure means.
"""

from __future__ import annotations

import asyncio
from typing import Final

from .api_client import ApiClient, InstancePage
from .listing import MAX_LIMIT, PAGE, Change, Fetch, InstanceQuery, Listing, LocalSegment
from .live_registry import LOCAL_SORT_MAX, LiveRegistry

MAX_STEPS: Final = 200
"""Pages fetched one after another for one window at most (a jump far into a big listing
walks there a page of ``MAX_LIMIT`` at a time)."""


class Loader:
    """Fills ``live`` from ``client``."""

    def __init__(self, client: ApiClient, live: LiveRegistry) -> None:
        self.client = client
        self.live = live

    async def services(self) -> str | None:
        """The services summary into ``live``; the event id it reflects."""
        listing = await self.client.list_services()
        self.live.set_services(listing.services, listing.version)
        return listing.version

    async def first_page(self) -> InstancePage:
        """The first page of every instance; it says whether the router pages at all."""
        page = await self.client.list_instances(InstanceQuery(), PAGE)
        self.live.paged = page.paged
        if not page.paged:
            self.live.local_all = {i.key: i for i in page.instances}
        return page

    def seed(self, listing: Listing, page: InstancePage) -> None:
        """Give ``page`` (of every instance) to ``listing`` if its first segment lists that."""
        segment = listing.segments[0] if listing.segments else None
        wanted = listing.wanted(0, 1)
        if wanted and wanted[0][0] is segment and wanted[0][0].query == InstanceQuery():
            target, _ = wanted[0]
            fetch = Fetch(0, None, PAGE)
            target.accept(
                fetch,
                page.instances,
                page.total,
                page.next_cursor,
                self.live.sequence(page.version),
            )
            self.live.replay(target)

    async def fill(self, listing: Listing, low: int, high: int) -> bool:
        """Fetch pages until rows ``low``..``high`` of ``listing`` are loaded; whether any came."""
        fetched = False
        for _ in range(MAX_STEPS):
            wanted = listing.wanted(low, high)
            if not wanted:
                break
            pages = await asyncio.gather(
                *(self.client.list_instances(s.query, f.limit, f.cursor) for s, f in wanted)
            )
            for (segment, fetch), page in zip(wanted, pages, strict=True):
                version = self.live.sequence(page.version)
                segment.accept(fetch, page.instances, page.total, page.next_cursor, version)
                self.live.replay(segment)
            fetched = True
        return fetched

    async def local(self, segment: LocalSegment, query: InstanceQuery) -> bool:
        """Every instance matching ``query`` into ``segment``; false (and nothing kept) if
        there are more than ``LOCAL_SORT_MAX``."""
        cursor: str | None = None
        for _ in range(LOCAL_SORT_MAX // MAX_LIMIT + 1):
            page = await self.client.list_instances(query, MAX_LIMIT, cursor)
            if page.total > LOCAL_SORT_MAX:
                return False
            for instance in page.instances:
                segment.apply(Change(None, instance))
            cursor = page.next_cursor
            if cursor is None:
                break
        for change in self.live.recent:
            segment.apply(change)
        return True

    async def service_drained(self, service: str) -> bool:
        """Whether every live instance of ``service`` is in maintenance (and it has some)."""
        if not self.live.counts.count(service, "ONLINE") + self.live.counts.count(
            service, "UNHEALTHY"
        ):
            return False
        for status in ("ONLINE", "UNHEALTHY"):
            query = InstanceQuery(service=service, status=status, maintenance="exclude")
            if (await self.client.list_instances(query, 1)).total:
                return False
        return True
