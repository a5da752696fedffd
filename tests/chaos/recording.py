"""Recording client operations into the history: one ``op`` record per request.

Both the raw wire clients and the SDK's connection (through
``RecordingConnection``) send every request through ``Recorder.request``, so
an SDK's registrations, heartbeats and re-registrations are in the history
exactly as a raw client's are.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import msgpack
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .history import HistoryWriter, Record

KINDS = {
    "ipc.service.register": "register",
    "ipc.service.heartbeat": "heartbeat",
    "ipc.service.deregister": "deregister",
    "ipc.service.discover": "discover",
}


def kind_of(subject: str) -> str | None:
    """The op kind of a request subject (a holder's own heartbeat subject included)."""
    if subject in KINDS:
        return KINDS[subject]
    if subject.startswith("ipc.router.") and subject.endswith(".heartbeat"):
        return "heartbeat"
    return None


class Recorder:
    """Writes ops, events, faults and views to one history, numbering the ops."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer
        self._ids = itertools.count(1)
        self.counts: dict[str, int] = {}

    def write(self, record: Record) -> None:
        """Write any record."""
        self.writer.write(record)

    def fault(
        self, kind: str, target: str, detail: str = "", start: float | None = None, **extra: Any
    ) -> None:
        """A nemesis action, done just now (``start``: when it began, if it took time;
        ``extra``: more fields, such as a node fault's ``leaders``)."""
        now = time.time()
        record: Record = {"type": "fault", "t": now, "kind": kind, "target": target}
        record["detail"] = detail
        record["start"] = now if start is None else start
        record.update(extra)
        self.write(record)

    async def request(
        self,
        nc: NatsClient,
        client: str,
        subject: str,
        payload: bytes,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> Msg | None:
        """Send one request, record it as an ``op``, and return the reply message.

        Failures are recorded, then raised again (the SDK needs to see them);
        a request on a subject that is not a registry operation is not recorded.
        """
        kind = kind_of(subject)
        body = _decoded(payload)
        invoke = time.time()
        msg: Msg | None = None
        outcome: str | None = "ok"
        error: str | None = None
        try:
            msg = await nc.request(subject, payload, timeout=timeout, headers=headers)
        except asyncio.CancelledError:
            outcome = None  # the harness stopped it: never completed, not recorded
            raise
        except nats_errors.NoRespondersError:
            outcome = "no_responders"
            raise
        except (TimeoutError, nats_errors.TimeoutError):
            outcome = "timeout"
            raise
        except Exception as exc:
            outcome, error = "error", repr(exc)
            raise
        finally:
            if kind is not None and outcome is not None:
                reply = None
                if msg is not None:
                    try:
                        reply = msgpack.unpackb(msg.data)
                    except Exception as exc:
                        outcome, error = "error", f"undecodable reply: {exc!r}"
                self._op(client, kind, subject, body, invoke, outcome, reply, error, timeout)
        return msg

    def _op(
        self,
        client: str,
        kind: str,
        subject: str,
        body: Any,
        invoke: float,
        outcome: str,
        reply: Any,
        error: str | None,
        timeout: float,
    ) -> None:
        complete = time.time()
        fields = body if isinstance(body, dict) else {}
        record: Record = {
            "type": "op",
            "t": complete,
            "id": next(self._ids),
            "client": client,
            "kind": kind,
            "subject": subject,
            "service": fields.get("service_name"),
            "instance": fields.get("instance_id"),
            "session": fields.get("session_id"),
            "invoke": invoke,
            "complete": complete,
            "timeout": timeout,
            "request": body,
            "outcome": outcome,
            "reply": reply,
        }
        if error is not None:
            record["error"] = error
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.write(record)


def _decoded(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload)
    except Exception:
        return None


class RecordingConnection:
    """A nats-py client as the SDK sees it, recording each request it makes.

    Everything but ``request`` goes straight to the real client.
    """

    def __init__(self, nc: NatsClient, recorder: Recorder, client: str) -> None:
        self._nc = nc
        self._recorder = recorder
        self._client = client

    async def request(
        self,
        subject: str,
        payload: bytes,
        reply_within: float,
        /,
        *,
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        """Publish and wait for one reply, recording the op."""
        msg = await self._recorder.request(
            self._nc, self._client, subject, payload, reply_within, headers
        )
        assert msg is not None  # failures raise
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nc, name)
