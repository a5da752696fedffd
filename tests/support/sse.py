"""Reading server-sent events (``GET /api/v1/admin/events``) as a real client does."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

WAIT = 10.0


@dataclass
class Sse:
    """One server-sent event as a client sees it."""

    id: str | None
    event: str
    data: dict[str, object]

    @property
    def change(self) -> tuple[str, str]:
        """``(kind, instance id)`` of a change event."""
        instance = self.data["instance"]
        assert isinstance(instance, dict)
        return self.event, instance["instance_id"]


class SseReader:
    """Reads events off an open streaming response, by the SSE rules (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = WAIT) -> Sse:
        """The next event; fails if none comes within ``timeout`` seconds."""
        return await asyncio.wait_for(self._read(), timeout)

    async def _read(self) -> Sse:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line.startswith(":"):
                continue
            if line == "":
                if "data" in fields:
                    return Sse(
                        fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                    )
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise EOFError("the stream ended")
