"""The chaos harness's proxies do to a link what the nemesis asks: relay, slow, drop, cut.

Each test relays to an echo server on loopback through one link of a ProxyHub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.proxy import Link, ProxyHub


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back whatever comes, until the end."""
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def link(proxies: ProxyHub) -> AsyncIterator[Link]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield proxies.add("client>node", node="node", owner="client", upstream=port)
    server.close()


async def round_trip(
    link: Link, data: bytes = b"ping", timeout: float = 2.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Connect through ``link``, send ``data``, read it back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
    writer.write(data)
    got = await asyncio.wait_for(reader.readexactly(len(data)), timeout)
    return reader, writer, got


async def test_an_up_link_relays_both_ways(link: Link) -> None:
    _, writer, got = await round_trip(link)
    writer.close()

    assert got == b"ping"


async def test_latency_delays_each_chunk_both_ways_in_order(proxies: ProxyHub, link: Link) -> None:
    reader, writer, _ = await round_trip(link)
    proxies.delay([link], 0.2)

    started = time.monotonic()
    for chunk in (b"a", b"b", b"c"):
        writer.write(chunk)
        await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(3), 2.0)

    assert got == b"abc"
    assert time.monotonic() - started >= 0.4  # 0.2 s out, 0.2 s back
    writer.close()


async def test_a_dropped_direction_discards_its_data_and_keeps_the_connection(
    proxies: ProxyHub, link: Link
) -> None:
    reader, writer, _ = await round_trip(link)
    proxies.drop([link], "reverse")
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)

    proxies.restore([link])
    writer.write(b"back")

    assert await asyncio.wait_for(reader.readexactly(4), 2.0) == b"back"
    writer.close()


async def test_a_cut_resets_the_connections_and_refuses_new_ones(
    proxies: ProxyHub, link: Link
) -> None:
    reader, writer, _ = await round_trip(link)
    proxies.cut([link])

    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2.0)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await round_trip(link)
    writer.close()

    proxies.restore([link])
    assert (await round_trip(link))[2] == b"ping"


async def test_the_hubs_own_stalls_are_recorded(proxies: ProxyHub) -> None:
    await asyncio.sleep(0.1)  # its watch started
    proxies.loop.call_soon_threadsafe(time.sleep, 0.3)  # the hub's loop relays nothing
    await asyncio.sleep(0.5)

    assert [s["loop"] for s in proxies.stalls.records() if s["late"] >= 0.2] == ["proxies"]
