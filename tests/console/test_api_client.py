"""The REST client: parsing, and every failure mapped to one ApiError."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from aegis.console.api_client import ApiClient, ApiError, retry_delay
from aegis.console.models import InstanceInfo, ServiceSummary
from pytest_httpx import HTTPXMock

from .helpers import API, INSTANCES_URL, NOW, SAMPLE, SERVICES_URL, add_poll, fixed_clock


@pytest.fixture
async def client():
    api = ApiClient(API + "/", token=None, clock=fixed_clock)
    yield api
    await api.aclose()


async def test_fetch_parses_services_and_instances(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    add_poll(httpx_mock, SAMPLE)
    snapshot = await client.fetch()
    assert snapshot.fetched_at == NOW
    assert snapshot.services[1] == ServiceSummary("orders", 3, 2, 1, 0)
    assert snapshot.instances[3] == InstanceInfo(
        service_name="orders",
        instance_id="orders-3",
        status="ONLINE",
        registered_at=datetime(2026, 11, 3, 11, 0, 0, tzinfo=UTC),
        last_heartbeat_at=datetime(2026, 11, 3, 11, 57, 30, tzinfo=UTC),
        metadata={"version": "1.4.2", "tags": ["blue", "canary"], "limits": {"rps": 250}},
    )
    assert snapshot.instances[3].key == "orders/orders-3"
    # The trailing slash of the base URL does not double up.
    assert [str(r.url) for r in httpx_mock.get_requests()] == [SERVICES_URL, INSTANCES_URL]


async def test_connection_refused_is_unreachable(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(ApiError) as caught:
        await client.fetch()
    assert caught.value.unreachable
    assert caught.value.reason == "cannot connect: [Errno 111] Connection refused"


async def test_timeout_is_unreachable(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectTimeout("timed out"))
    with pytest.raises(ApiError, match="no answer within 5s") as caught:
        await client.fetch()
    assert caught.value.unreachable


async def test_dropped_connection_is_unreachable(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.RemoteProtocolError("Server disconnected"))
    with pytest.raises(ApiError, match="RemoteProtocolError: Server disconnected") as caught:
        await client.fetch()
    assert caught.value.unreachable


async def test_standard_error_body(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=SERVICES_URL,
        status_code=500,
        json={"error": {"code": "INTERNAL_ERROR", "message": "internal router error"}},
    )
    with pytest.raises(ApiError) as caught:
        await client.fetch()
    assert not caught.value.unreachable
    assert caught.value.status == 500
    assert caught.value.reason == "HTTP 500 INTERNAL_ERROR: internal router error"


async def test_unauthorized_hints_at_the_token(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=401, json={"error": {"code": "UNAUTHORIZED", "message": "token required"}}
    )
    with pytest.raises(ApiError, match=r"UNAUTHORIZED: token required \(check --token"):
        await client.fetch()


async def test_non_json_error_page(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=502, text="<html><h1>Bad Gateway</h1>\n</html>")
    with pytest.raises(ApiError) as caught:
        await client.fetch()
    assert caught.value.reason == "HTTP 502 Bad Gateway: <html><h1>Bad Gateway</h1> </html>"


async def test_success_that_is_not_json(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=SERVICES_URL, text="hello")
    with pytest.raises(ApiError, match="HTTP 200 from /api/v1/admin/services is not JSON"):
        await client.fetch()


@pytest.mark.parametrize(
    "instances_body",
    [
        {"items": []},
        {"instances": [{"service_name": "a"}]},
        {"instances": [{**SAMPLE[0], "registered_at": "soon"}]},
        {"instances": [{**SAMPLE[0], "metadata": [1, 2]}]},
        ["not", "a", "map"],
    ],
)
async def test_unexpected_shape(
    client: ApiClient, httpx_mock: HTTPXMock, instances_body: object
) -> None:
    httpx_mock.add_response(url=SERVICES_URL, json={"services": [], "total": 0})
    httpx_mock.add_response(url=INSTANCES_URL, json=instances_body)
    with pytest.raises(ApiError, match="unexpected response shape") as caught:
        await client.fetch()
    assert not caught.value.unreachable


async def test_token_header(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, [])
    api = ApiClient(API, token="t0k", clock=fixed_clock)
    try:
        await api.fetch()
    finally:
        await api.aclose()
    assert {r.headers["Authorization"] for r in httpx_mock.get_requests()} == {"Bearer t0k"}


@pytest.mark.parametrize(
    ("failures", "interval", "delay"),
    [
        (0, 2.0, 2.0),
        (1, 2.0, 2.0),
        (2, 2.0, 4.0),
        (3, 2.0, 8.0),
        (4, 2.0, 16.0),
        (5, 2.0, 30.0),
        (500, 2.0, 30.0),
        (1, 60.0, 60.0),
        (6, 60.0, 60.0),
    ],
)
def test_retry_delay_doubles_to_the_cap(failures: int, interval: float, delay: float) -> None:
    assert retry_delay(failures, interval) == delay
