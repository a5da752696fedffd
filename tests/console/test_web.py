"""The web console's server: who gets the page and the websocket, and what the
console subprocesses are given. (The page in a browser: tests/e2e/test_web_console.py.)"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import AsyncIterator, Callable

import pytest
from aegis.console import web
from aegis.console.web import (
    COOKIE,
    SESSION_SECONDS,
    ConsoleWebServer,
    Sessions,
    console_command,
    console_environment,
    serve,
)
from aegis.console.web_options import WebOptions
from aiohttp.test_utils import TestClient, TestServer

SECRET = "the-login-secret-of-this-test"
PORT = 8080
LOOPBACK = {"Host": f"127.0.0.1:{PORT}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _client(options: WebOptions, clock: Callable[[], float]) -> TestClient[object, object]:
    server = ConsoleWebServer("true", options, clock)
    client: TestClient[object, object] = TestClient(TestServer(await server.make_app()))
    await client.start_server()
    return client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def open_console(clock: Clock) -> AsyncIterator[TestClient[object, object]]:
    """Served on loopback without a secret."""
    client = await _client(WebOptions("127.0.0.1", PORT), clock)
    yield client
    await client.close()


@pytest.fixture
async def locked_console(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[object, object]]:
    """Served with a login secret."""
    monkeypatch.setattr(web, "LOGIN_FAILURE_DELAY", 0)
    client = await _client(WebOptions("0.0.0.0", PORT, SECRET), clock)
    yield client
    await client.close()


async def _sign_in(client: TestClient[object, object]) -> str:
    response = await client.post("/login", data={"secret": SECRET}, allow_redirects=False)
    assert response.status == 303
    return response.cookies[COOKIE].value


# Without a secret: loopback names only -------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_page_answers_to_loopback_names(
    open_console: TestClient[object, object], host: str
) -> None:
    response = await open_console.get("/", headers={"Host": f"{host}:{PORT}"})
    assert response.status == 200
    page = await response.text()
    assert 'src="static/js/textual.js"' in page
    assert "googleapis" not in page  # nothing fetched from another host


async def test_another_host_name_is_refused(open_console: TestClient[object, object]) -> None:
    """A site whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing."""
    for path in ("/", "/ws", "/static/js/textual.js"):
        response = await open_console.get(path, headers={"Host": f"attacker.example:{PORT}"})
        assert response.status == 403, path


async def test_the_websocket_opens_only_from_the_page_s_origin(
    open_console: TestClient[object, object],
) -> None:
    """Another site open in the same browser cannot drive the console."""
    for origin in ("http://attacker.example", None):
        headers = dict(LOOPBACK) | ({"Origin": origin} if origin else {})
        response = await open_console.get("/ws", headers=headers)
        assert response.status == 403
        assert "own page" in await response.text()


async def test_no_login_page_without_a_secret(open_console: TestClient[object, object]) -> None:
    response = await open_console.get("/login", headers=LOOPBACK, allow_redirects=False)
    assert response.status == 303


# With a secret: a session cookie ---------------------------------------------------------


async def test_the_page_sends_a_stranger_to_the_login_form(
    locked_console: TestClient[object, object],
) -> None:
    response = await locked_console.get("/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "login"
    form = await locked_console.get("/login")
    assert form.status == 200
    assert 'type="password"' in await form.text()


async def test_nothing_else_is_served_without_the_cookie(
    locked_console: TestClient[object, object],
) -> None:
    for path in ("/ws", "/static/js/textual.js", "/download/x"):
        origin = {"Origin": str(locked_console.make_url("/")).rstrip("/")}
        response = await locked_console.get(path, headers=origin)
        assert response.status == 401, path


async def test_a_wrong_secret_gets_the_form_again(
    locked_console: TestClient[object, object],
) -> None:
    response = await locked_console.post("/login", data={"secret": "guess"})
    assert response.status == 401
    assert "Wrong secret" in await response.text()
    assert COOKIE not in response.cookies


async def test_the_right_secret_sets_a_strict_http_only_cookie(
    locked_console: TestClient[object, object],
) -> None:
    response = await locked_console.post("/login", data={"secret": SECRET}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "./"
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["max-age"] == str(SESSION_SECONDS)
    assert not cookie["secure"]  # plain http here; behind https it is set (below)
    page = await locked_console.get("/", cookies={COOKIE: cookie.value})
    assert page.status == 200
    assert "textual.js" in await page.text()


async def test_the_cookie_is_secure_behind_an_https_proxy(
    locked_console: TestClient[object, object],
) -> None:
    response = await locked_console.post(
        "/login",
        data={"secret": SECRET},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert response.cookies[COOKIE]["secure"] is True


async def test_with_a_secret_any_host_name_may_serve(
    locked_console: TestClient[object, object],
) -> None:
    """Behind a proxy the Host is the public name: the cookie is the guard then."""
    cookie = await _sign_in(locked_console)
    headers = {"Host": "console.example.com"}
    page = await locked_console.get("/", headers=headers, cookies={COOKIE: cookie})
    assert page.status == 200


async def test_the_websocket_needs_the_cookie_and_the_origin(
    locked_console: TestClient[object, object],
) -> None:
    cookie = await _sign_in(locked_console)
    response = await locked_console.get(
        "/ws", headers={"Origin": "http://attacker.example"}, cookies={COOKIE: cookie}
    )
    assert response.status == 403


# Sessions -----------------------------------------------------------------------------


def test_a_session_lasts_its_time_and_no_longer(clock: Clock) -> None:
    sessions = Sessions(SECRET, clock)
    value = sessions.issue()
    assert sessions.valid(value)
    clock.now += SESSION_SECONDS - 1
    assert sessions.valid(value)
    clock.now += 1
    assert not sessions.valid(value)


@pytest.mark.parametrize("value", [None, "", "nodot", "x.y", "1800000000.", "-1.abc"])
def test_malformed_cookies_are_invalid(clock: Clock, value: str | None) -> None:
    assert not Sessions(SECRET, clock).valid(value)


def test_a_cookie_is_bound_to_its_secret_and_its_time(clock: Clock) -> None:
    value = Sessions(SECRET, clock).issue()
    assert not Sessions(SECRET + "!", clock).valid(value)
    issued, mac = value.split(".")
    assert not Sessions(SECRET, clock).valid(f"{int(issued) + 1}.{mac}")


# What each console subprocess gets ---------------------------------------------------


def test_the_console_command_carries_no_settings() -> None:
    assert shlex.split(console_command()) == [sys.executable, "-m", "aegis.console.cli"]


def test_the_settings_go_in_the_environment() -> None:
    assert console_environment("http://r:8000", 0.5, "tok") == {
        "AEGIS_API_URL": "http://r:8000",
        "AEGIS_CONSOLE_INTERVAL": "0.5",
        "AEGIS_ADMIN_TOKEN": "tok",
    }
    assert "AEGIS_ADMIN_TOKEN" not in console_environment("http://r:8000", 2.0, None)


def test_serve_hands_the_subprocesses_its_settings_but_not_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, str]] = []
    monkeypatch.setattr(ConsoleWebServer, "serve", lambda self: seen.append(dict(os.environ)))
    monkeypatch.setenv("AEGIS_CONSOLE_WEB_SECRET", SECRET)
    monkeypatch.setenv("AEGIS_ADMIN_TOKEN", "from-the-shell")
    monkeypatch.setenv("AEGIS_API_URL", "http://elsewhere:1")
    serve(WebOptions("127.0.0.1", PORT, SECRET), console_environment("http://r:8000", 2.0, None))
    (env,) = seen
    assert "AEGIS_CONSOLE_WEB_SECRET" not in env
    assert "AEGIS_ADMIN_TOKEN" not in env  # given none: the shell's is not passed on
    assert env["AEGIS_API_URL"] == "http://r:8000"
