"""aegis.router.rest.routes: paged listings, id filters, ETags and 304s (no NATS)."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.domain import InstanceKey
from aegis.router.registry.operations import Registry
from aegis.router.rest.cursor import encode_cursor
from aegis.router.settings import Settings
from aegis.wire.messages import RegisterRequest
from aegis.wire.rest import InstancesResponse
from sanic import Sanic

from tests.unit.router.fakes import SESSION

ADMIN = "/api/v1/admin"
IDS = ["Web-01", "web-02", "web-03", "api-1", "api-2", "cache-x"]


async def register(registry: Registry, service: str, instance: str) -> None:
    request = RegisterRequest(service_name=service, instance_id=instance, session_id=SESSION)
    await registry.register(request)


@pytest.fixture
async def app() -> Sanic[Any, Any]:
    app = bootstrap(Settings(store="memory"), nats=None)
    for instance in IDS:
        await register(app.ctx.registry, "shop", instance)
    await register(app.ctx.registry, "auth", "a-1")
    return app


async def get(app: Sanic[Any, Any], path: str, **headers: str) -> Any:
    _, response = await app.asgi_client.get(f"{ADMIN}/{path}", headers=headers)
    return response


def ids(body: dict[str, Any]) -> list[str]:
    return [f"{i['service_name']}/{i['instance_id']}" for i in body["instances"]]


@pytest.mark.parametrize("path", ["instances?service=shop&", "services/shop/instances?"])
async def test_pages_follow_next_cursor_to_the_end(app: Sanic[Any, Any], path: str) -> None:
    shown: list[str] = []
    url = f"{path}limit=4"
    while True:
        response = await get(app, url)
        assert response.status == 200
        body = InstancesResponse.model_validate(response.json)
        assert body.total == 6
        assert len(body.instances) <= 4
        assert body.version == response.headers["x-aegis-version"]
        shown += [i.instance_id for i in body.instances]
        if body.next_cursor is None:
            break
        url = f"{path}limit=4&cursor={body.next_cursor}"
    assert shown == sorted(IDS)  # "Web-01" sorts first: ids are case-sensitive


async def test_registering_between_pages_is_met_in_its_place(app: Sanic[Any, Any]) -> None:
    first = (await get(app, "instances?limit=3")).json
    assert ids(first) == ["auth/a-1", "shop/Web-01", "shop/api-1"]
    await register(app.ctx.registry, "shop", "aaa")  # before the cursor: not shown
    await register(app.ctx.registry, "shop", "b")  # after it: shown
    rest = (await get(app, f"instances?cursor={first['next_cursor']}")).json
    assert ids(rest) == ["shop/api-2", "shop/b", "shop/cache-x"] + [
        f"shop/web-0{i}" for i in (2, 3)
    ]
    assert rest["next_cursor"] is None
    assert rest["total"] == 9


@pytest.mark.parametrize(
    ("query", "expected", "total"),
    [
        ("id_prefix=web", ["shop/web-02", "shop/web-03"], 2),
        ("q=WEB", ["shop/Web-01", "shop/web-02", "shop/web-03"], 3),
        ("q=web&id_prefix=web&limit=1", ["shop/web-02"], 2),
        ("q=1&service=shop", ["shop/Web-01", "shop/api-1"], 2),
        ("q=1&status=ONLINE", ["auth/a-1", "shop/Web-01", "shop/api-1"], 3),
        ("id_prefix=a", ["auth/a-1", "shop/api-1", "shop/api-2"], 3),
        ("q=nothing", [], 0),
    ],
)
async def test_id_filters_combine_with_the_others(
    app: Sanic[Any, Any], query: str, expected: list[str], total: int
) -> None:
    body = (await get(app, f"instances?{query}")).json
    assert ids(body) == expected
    assert body["total"] == total


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "INVALID_LIMIT"),
        ("limit=1001", "INVALID_LIMIT"),
        ("limit=ten", "INVALID_LIMIT"),
        ("limit=", "INVALID_LIMIT"),
        ("cursor=nonsense", "INVALID_CURSOR"),
        ("cursor=", "INVALID_CURSOR"),
        ("q=" + "x" * 129, "INVALID_FILTER"),
        ("id_prefix=" + "x" * 129, "INVALID_FILTER"),
    ],
)
@pytest.mark.parametrize("path", ["instances", "services/shop/instances"])
async def test_bad_paging_arguments_are_400(
    app: Sanic[Any, Any], path: str, query: str, code: str
) -> None:
    response = await get(app, f"{path}?{query}")
    assert response.status == 400
    assert response.json["error"]["code"] == code


async def test_another_services_cursor_is_400(app: Sanic[Any, Any]) -> None:
    cursor = encode_cursor(InstanceKey("auth", "a-1"))
    for path in ("services/shop/instances", "instances?service=shop&"):
        sep = "&" if path.endswith("&") else "?"
        response = await get(app, f"{path.rstrip('&')}{sep}cursor={cursor}")
        assert response.json["error"]["code"] == "INVALID_CURSOR", path
    assert (await get(app, f"instances?cursor={cursor}")).status == 200


@pytest.mark.parametrize(
    "path", ["services", "services/shop", "services/shop/instances?limit=2", "instances?q=web"]
)
async def test_an_unchanged_listing_is_304_and_a_change_makes_it_200(
    app: Sanic[Any, Any], path: str
) -> None:
    first = await get(app, path)
    tag, version = first.headers["etag"], first.headers["x-aegis-version"]
    assert tag[0] == tag[-1] == '"'
    again = await get(app, path, **{"If-None-Match": tag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["etag"] == tag
    assert again.headers["x-aegis-version"] == version
    assert (await get(app, path, **{"If-None-Match": '"stale"'})).status == 200

    registry: Registry = app.ctx.registry
    await registry.heartbeat(InstanceKey("shop", "web-02"), SESSION)  # a contact: no change
    assert (await get(app, path, **{"If-None-Match": tag})).status == 304
    await registry.force_deregister(InstanceKey("shop", "web-02"))
    changed = await get(app, path, **{"If-None-Match": tag})
    assert changed.status == 200
    assert changed.headers["etag"] != tag
    assert changed.headers["x-aegis-version"] != version


async def test_listings_differ_in_tag_by_query(app: Sanic[Any, Any]) -> None:
    one = await get(app, "instances?limit=1")
    two = await get(app, "instances?limit=2")
    assert one.headers["etag"] != two.headers["etag"]
    assert (
        await get(app, "instances?limit=2", **{"If-None-Match": one.headers["etag"]})
    ).status == 200


async def test_an_unknown_service_is_404_before_any_304(app: Sanic[Any, Any]) -> None:
    response = await get(app, "services/nope/instances", **{"If-None-Match": "*"})
    assert response.status == 404
