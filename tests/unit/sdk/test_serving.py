"""``serve_forever``: serving until SIGTERM or SIGINT, then deregistering, for the async and
the sync client; the signal handlers that were there before are put back.

The signals are real, sent to this process once the client's handler is in place
(a stop signal without it would end the test run).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

import pytest
from aegis.sdk import ClientConfig
from aegis.sdk.serving import OFF_MAIN_THREAD, wait_for_signal
from aegis.sdk.sync import ServiceClient as SyncServiceClient
from aegis.wire.messages import DEREGISTER_SUBJECT as DEREGISTER
from aegis.wire.messages import HEARTBEAT_SUBJECT as HEARTBEAT
from aegis.wire.messages import REGISTER_SUBJECT as REGISTER

from tests.support import eventually
from tests.support.blocking import wait_for
from tests.unit.sdk.fakes import ALIVE, HANG, FakeNats, created, make_client

STOPS = [signal.SIGTERM, signal.SIGINT]

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signals reach the main thread only",
)


def scripted() -> FakeNats:
    return FakeNats().answer(REGISTER, created).answer(HEARTBEAT, HANG).answer(DEREGISTER, ALIVE)


def handlers() -> dict[signal.Signals, object]:
    return {sig: signal.getsignal(sig) for sig in STOPS}


def taken_over(before: dict[signal.Signals, object]) -> Callable[[], bool]:
    return lambda: all(signal.getsignal(sig) is not before[sig] for sig in STOPS)


@pytest.mark.parametrize("sig", STOPS, ids=lambda sig: sig.name)
async def test_serve_forever_deregisters_on_the_signal_and_puts_the_handlers_back(
    sig: signal.Signals,
) -> None:
    fake = scripted()
    before = handlers()
    async with make_client(fake) as client:
        await client.register("billing", "b-1")
        serving = asyncio.create_task(client.serve_forever())
        await eventually(taken_over(before), "serve_forever's handlers")
        assert fake.sent(DEREGISTER) == [], "registered while serving"
        signal.raise_signal(sig)

        assert await serving == sig
        # Deregistered before serve_forever returned, not on leaving the block.
        assert [body["instance_id"] for body in fake.sent(DEREGISTER)] == ["b-1"]
        assert handlers() == before
        assert client.instances == {}
    assert len(fake.sent(DEREGISTER)) == 1


def test_the_sync_client_blocks_until_the_signal_then_deregisters() -> None:
    fake = scripted()
    before = handlers()
    main = threading.main_thread().ident
    assert main is not None

    def stop_when_serving() -> None:
        wait_for(taken_over(before), "serve_forever's handlers")
        signal.pthread_kill(main, signal.SIGTERM)

    shared = ClientConfig(shared_subjects=True)  # the fake answers the v1 subjects
    with SyncServiceClient(config=shared, connect=fake.connect) as client:
        client.register("billing", "b-1")
        stopper = threading.Thread(target=stop_when_serving)
        stopper.start()
        try:
            assert client.serve_forever() == signal.SIGTERM
        finally:
            stopper.join()
        assert [body["instance_id"] for body in fake.sent(DEREGISTER)] == ["b-1"]
        assert handlers() == before
    assert len(fake.sent(DEREGISTER)) == 1


def test_off_the_main_thread_it_says_what_to_do_instead() -> None:
    raised: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(wait_for_signal())
        except RuntimeError as exc:
            raised.append(exc)

    waiter = threading.Thread(target=serve)
    waiter.start()
    waiter.join()

    assert [str(exc) for exc in raised] == [OFF_MAIN_THREAD]
