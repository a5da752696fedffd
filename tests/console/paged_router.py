"""A fake router that pages as the REST contract of issue 24 says, served through pytest-httpx.

``GET /instances`` takes ``limit``, ``cursor`` and the filters ``service``, ``status``,
``id_prefix``, ``q``, ``maintenance``; bodies carry ``total``, ``next_cursor`` and
``version``; ``GET /services`` carries ``version``; ``GET /events`` stays open and
sends what ``change`` queues, after the ``Last-Event-ID`` it was opened with.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pytest_httpx import HTTPXMock

from .helpers import ANY_INSTANCES_URL, EVENTS_URL, SERVICES_URL, services_body

ROUTER = "r1"


def order(item: dict[str, Any]) -> tuple[str, str]:
    return item["service_name"], item["instance_id"]


class PagedRouter:
    """Instances in the router's order, a change counter, and the open event streams."""

    def __init__(self, instances: list[dict[str, Any]]) -> None:
        self.items = sorted(instances, key=order)
        self.keys = [order(item) for item in self.items]
        self.sequence = 0
        self.streams: list[asyncio.Queue[bytes | None]] = []
        self.requests: list[httpx.Request] = []

    def install(self, httpx_mock: HTTPXMock) -> None:
        """Answer the console's requests from now on."""
        httpx_mock.add_callback(self._services, url=SERVICES_URL, is_reusable=True)
        httpx_mock.add_callback(self._instances, url=ANY_INSTANCES_URL, is_reusable=True)
        httpx_mock.add_callback(self._events, url=EVENTS_URL, is_reusable=True)

    @property
    def version(self) -> str:
        return f"{ROUTER}:{self.sequence}"

    def _services(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={**services_body(self.items), "version": self.version})

    def _instances(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        args = request.url.params
        start, after_key = 0, ("", "")
        if cursor := args.get("cursor"):
            service, _, instance_id = cursor.partition("/")
            after_key = (service, instance_id)
            start = bisect.bisect_right(self.keys, after_key)
        matched = self._filtered(args)
        limit = int(args.get("limit") or 0) or len(self.items)
        if matched is None:  # no filter: by position
            page = self.items[start : start + limit]
            total = len(self.items)
            more = start + limit < total
        else:
            after = [item for item in matched if order(item) > after_key]
            page, total, more = after[:limit], len(matched), len(after) > limit
        next_cursor = "/".join(order(page[-1])) if page and more else None
        body = {"instances": page, "total": total, "next_cursor": next_cursor}
        return httpx.Response(200, json={**body, "version": self.version})

    def _filtered(self, args: httpx.QueryParams) -> list[dict[str, Any]] | None:
        service, status, needle = args.get("service"), args.get("status"), args.get("q")
        prefix, maintenance = args.get("id_prefix"), args.get("maintenance")
        if not any((service, status, needle, prefix, maintenance)):
            return None
        items = self.items
        if service:
            low = bisect.bisect_left(self.keys, (service, ""))
            high = bisect.bisect_left(self.keys, (service + "\0", ""))
            items = items[low:high]
        folded = (needle or "").casefold()
        return [
            item
            for item in items
            if (not status or status == "ANY" or item["status"] == status)
            and (not folded or folded in item["instance_id"].casefold())
            and (not prefix or item["instance_id"].startswith(prefix))
            and (
                not maintenance
                or maintenance == "include"
                or (maintenance == "only") == ("maintenance" in item)
            )
        ]

    def _events(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.streams.append(queue)

        async def frames() -> AsyncIterator[bytes]:
            yield f": events of router {ROUTER}\n\n".encode()
            while (frame := await queue.get()) is not None:
                yield frame

        headers = {"Content-Type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=frames())

    def change(self, kind: str, item: dict[str, Any], previous: str | None = None) -> None:
        """Store the change and send it to every open stream."""
        key = order(item)
        at = bisect.bisect_left(self.keys, key)
        present = at < len(self.keys) and self.keys[at] == key
        if kind == "removed":
            if present:
                del self.items[at], self.keys[at]
        elif present:
            self.items[at] = item
        else:
            self.items.insert(at, item)
            self.keys.insert(at, key)
        self.sequence += 1
        data = {"event": kind, "instance": item, "previous_status": previous}
        frame = f"id: {self.version}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()
        for queue in self.streams:
            queue.put_nowait(frame)

    def close_streams(self) -> None:
        """End every open stream (the console reconnects)."""
        for queue in self.streams:
            queue.put_nowait(None)
        self.streams.clear()
