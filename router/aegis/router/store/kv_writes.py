"""Compare-and-set writes to a JetStream key-value bucket, at the store's own cost.

A KV write is a JetStream publish on ``$KV.<bucket>.<key>`` with the header
``Nats-Expected-Last-Subject-Sequence`` (0: the key must be absent); the
stream's reply, a small JSON ack, carries the new revision or an error. This
is what nats-py's ``KeyValue.create``/``update``/``delete`` send too, through
``JetStreamContext.publish`` and ``Client.request``, which per write draw a
random token from the OS, arm an ``asyncio.wait_for``, parse the ack with the
json module and build a ``PubAck``: a third of a registration's own CPU in a
real router (docs/performance.md, issue 28). Here the replies come to one
inbox subscription, keyed by a counter; one reaper task times out what is
left unanswered; the ack is read with a byte search, and only an error is
parsed as JSON. Semantics are the same: the same subject, headers and
server-side check; errors 10071 and 10164 (wrong last sequence) raise
``WrongLastSequence``, anything else ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import orjson
from aegis.connect.tasks import cancel
from aegis.router.store.port import StoreError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION = "KV-Operation"
# Error codes of a compare-and-set that lost: JSStreamWrongLastSequenceErrF and
# JSStreamWrongLastSequenceConstantErr (nats-py's KeyValue maps the same two).
WRONG_LAST_SEQUENCE = (10071, 10164)
# How often writes past their timeout are failed: a write times out between
# ``timeout`` and ``timeout + REAP_EVERY`` after it was sent.
REAP_EVERY = 0.25

# The ack's revision: nats-server writes {"stream":"KV_b","seq":12} (Go's encoding,
# no spaces; "domain" and "duplicate" may join). Names hold no quotes, so the
# only "seq" key is the ack's own.
_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')


class WrongLastSequence(Exception):  # noqa: N818 - reads as a condition, like KeyError
    """The key was not at the expected revision (or, expecting 0, was not absent)."""


class KvWriter:
    """Publishes KV writes and waits for their acks, many in flight on one inbox."""

    def __init__(self, nc: NatsClient, bucket: str, timeout: float) -> None:
        self._nc = nc
        self._prefix = f"$KV.{bucket}."
        self._timeout = timeout
        # Token -> (ack future, deadline), oldest first: every write has the same
        # timeout, so the reaper stops at the first one not yet due.
        self._waiting: dict[str, tuple[asyncio.Future[Msg], float]] = {}
        self._inbox = ""
        self._counter = 0
        self._sub: Subscription | None = None
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe the acks' inbox and start timing writes out."""
        self._inbox = self._nc.new_inbox() + "."
        self._sub = await self._nc.subscribe(self._inbox + "*", cb=self._on_ack)
        self._reaper = asyncio.get_running_loop().create_task(
            self._reap(), name="aegis-kv-write-reaper"
        )

    async def stop(self) -> None:
        """Stop; writes still waiting fail with ``StoreError``."""
        reaper, self._reaper = self._reaper, None
        await cancel(reaper)
        sub, self._sub = self._sub, None
        if sub is not None:
            # A closed connection has no subscription left to end.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(StoreError("store stopped with the write in flight"))

    async def write(self, key: str, value: bytes, last: int, *, delete: bool = False) -> int:
        """Write ``value`` under ``key`` if the key is at revision ``last`` (0: absent);
        a delete marker instead with ``delete``. Returns the new revision."""
        if self._sub is None:
            raise StoreError("KV writer used before start()")
        self._counter += 1
        token = str(self._counter)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = (future, loop.time() + self._timeout)
        headers = {EXPECTED_LAST: str(last)}
        if delete:
            headers[KV_OPERATION] = "DEL"
        try:
            reply = self._inbox + token
            await self._nc.publish(self._prefix + key, value, reply=reply, headers=headers)
            ack = await future
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"writing {key}: {exc!r}") from exc
        finally:
            self._waiting.pop(token, None)
        return _revision(key, ack)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.get(msg.subject[len(self._inbox) :])
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    async def _reap(self) -> None:
        """Fail the writes whose ack did not come within the timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(REAP_EVERY)
            now = loop.time()
            for future, deadline in list(self._waiting.values()):
                if deadline > now:
                    break
                if not future.done():
                    future.set_exception(StoreError("no ack from the store within the timeout"))


def _revision(key: str, ack: Msg) -> int:
    """The revision an ack reports; ``WrongLastSequence`` or ``StoreError`` for an error."""
    data = ack.data
    if not data:  # a status message: 503, no JetStream stream listens on the subject
        status = ack.headers.get("Status") if ack.headers else None
        raise StoreError(f"writing {key}: no stream answered (status {status})")
    if b'"error"' in data:
        try:
            error = orjson.loads(data)["error"]
            code = error.get("err_code")
            description = error.get("description")
        except Exception as exc:
            raise StoreError(f"writing {key}: unreadable error ack {data[:200]!r}") from exc
        if code in WRONG_LAST_SEQUENCE:
            raise WrongLastSequence(description)
        raise StoreError(f"writing {key}: {description} (err_code {code})")
    found = _SEQ.search(data)
    if found is None:
        raise StoreError(f"writing {key}: unreadable ack {data[:200]!r}")
    return int(found[1])
