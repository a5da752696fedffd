"""Opening JetStream things while a cluster or a new stream elects its leader."""

from __future__ import annotations

import pytest
from aegis.router.store.jetstream import BucketMismatchError, until_ready
from nats import errors as nats_errors


async def test_an_attempt_is_tried_again_until_jetstream_answers() -> None:
    # A router joining a cluster whose new R3 members bucket had no stream leader
    # yet got "no responders" on its first put, and exited.
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise nats_errors.NoRespondersError
        return "joined"

    assert await until_ready(attempt, within=5.0) == "joined"
    assert len(tries) == 3


async def test_a_replica_mismatch_is_not_tried_again() -> None:
    tries: list[int] = []

    async def attempt() -> None:
        tries.append(1)
        raise BucketMismatchError("bucket has 1 replica")

    with pytest.raises(BucketMismatchError):
        await until_ready(attempt, within=5.0)
    assert len(tries) == 1


async def test_past_its_time_the_last_error_is_raised() -> None:
    async def attempt() -> None:
        raise nats_errors.NoRespondersError

    with pytest.raises(nats_errors.NoRespondersError):
        await until_ready(attempt, within=0.0)
