"""Server-sent events (the WHATWG ``text/event-stream`` format), parsed line by line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type (``message`` when unnamed), data and the last id seen."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Feed it the stream's lines (without their ends); a blank line yields the event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: the router's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            # The id sticks across events, as the spec says; it is what a reconnect resumes from.
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event=event, data="\n".join(data), id=self._id)
