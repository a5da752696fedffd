"""``aegis-console --web``: the same console served to browsers by textual-serve.

textual-serve runs an aiohttp server. Each browser page opens a websocket, and
for each websocket it starts the console as a subprocess (``command``) whose
screen goes to the page's xterm.js: every page is its own console process,
with the keys, colours, actions and events pane of the terminal one.

What this module adds around it, all in one aiohttp middleware (``guard``):

- Without a login secret (allowed on loopback only) a request must name the
  server by a loopback ``Host`` (``127.0.0.1:PORT``, ``localhost:PORT``,
  ``[::1]:PORT``): a web page elsewhere cannot reach it through DNS rebinding.
- The websocket must come from the page's own origin: another site open in
  the operator's browser cannot drive the console (cross-site websocket).
- With a login secret (``AEGIS_CONSOLE_WEB_SECRET``, required off loopback)
  every request but ``/login`` needs the signed session cookie that a right
  secret posted to ``/login`` sets; the page redirects there, the websocket is
  refused (401) without it.

The router URL and token reach each console subprocess through its
environment (inherited from this process), never its command line, so ``ps``
shows neither; the login secret is taken out of that environment first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from textual_serve.server import Server

from .web_options import SECRET_VARIABLE, WebOptions

COOKIE: Final = "aegis_console_session"
SESSION_SECONDS: Final = 12 * 3600
LOGIN_FAILURE_DELAY: Final = 1.0  # seconds before a wrong secret is answered
TEMPLATES: Final = Path(__file__).with_name("web_templates")
LOGIN_PATH: Final = "/login"
WEBSOCKET_PATH: Final = "/ws"


class Sessions:
    """Session cookies signed with the login secret: ``<issued>.<hmac>``, valid
    ``SESSION_SECONDS``. Nothing is stored; a new secret ends every session."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"aegis-console-session\0" + secret.encode()).digest()
        self._clock = clock

    def _mac(self, issued: str) -> str:
        return hmac.new(self._key, issued.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new cookie value, valid from now."""
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac(issued)}"

    def valid(self, value: str | None) -> bool:
        """True if ``value`` was issued by ``issue`` with this secret and has not expired."""
        if not value or "." not in value:
            return False
        issued, mac = value.split(".", 1)
        if not issued.isdigit() or not hmac.compare_digest(mac, self._mac(issued)):
            return False
        return 0 <= self._clock() - int(issued) < SESSION_SECONDS


def loopback_hosts(port: int) -> frozenset[str]:
    """The ``Host`` headers that name a loopback server on ``port``."""
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


def same_origin(request: web.Request) -> bool:
    """True if the request's ``Origin`` is the server it was sent to (its ``Host``)."""
    origin = request.headers.get("Origin")
    return origin is not None and urlsplit(origin).netloc == request.host


def _forbidden(text: str) -> web.Response:
    return web.Response(status=403, text=text + "\n")


def guard(options: WebOptions, sessions: Sessions | None) -> Middleware:
    """The aiohttp middleware that applies the rules in this module's docstring."""
    hosts = loopback_hosts(options.port)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if sessions is None and request.host not in hosts:
            return _forbidden(f"this console answers only to {sorted(hosts)}")
        if request.path == WEBSOCKET_PATH and not same_origin(request):
            return _forbidden("the console's websocket opens only from its own page")
        signed_in = sessions is None or sessions.valid(request.cookies.get(COOKIE))
        if not signed_in and request.path != LOGIN_PATH:
            if request.path == "/" and request.method == "GET":
                raise web.HTTPSeeOther(location=LOGIN_PATH.lstrip("/"))
            return web.Response(status=401, text="sign in at /login first\n")
        return await handler(request)

    return middleware


def _is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


class ConsoleWebServer(Server):
    """textual-serve's server with the page of ``web_templates`` and ``guard`` in front."""

    def __init__(
        self, command: str, options: WebOptions, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(
            command,
            host=options.host,
            port=options.port,
            title="aegis-console",
            templates_path=TEMPLATES,
        )
        self.options = options
        self.sessions = None if options.secret is None else Sessions(options.secret, clock)

    async def _make_app(self) -> web.Application:
        # textual-serve's own hook for its routes; the guard must see every request.
        app = await super()._make_app()
        app.middlewares.append(guard(self.options, self.sessions))
        app.add_routes(
            [web.get(LOGIN_PATH, self.handle_login_page), web.post(LOGIN_PATH, self.handle_login)]
        )
        return app

    async def make_app(self) -> web.Application:
        """The aiohttp application, as ``serve`` runs it (tests serve it themselves)."""
        return await self._make_app()

    async def on_startup(self, app: web.Application) -> None:
        """Say where to open the console (textual-serve prints a banner here)."""
        login = "" if self.sessions is None else f" (sign in with ${SECRET_VARIABLE})"
        host = f"[{self.host}]" if ":" in self.host else self.host
        print(f"aegis-console web: open http://{host}:{self.port}/{login}", flush=True)

    async def handle_login_page(self, request: web.Request) -> web.StreamResponse:
        """The form that asks for the login secret."""
        if self.sessions is None:
            raise web.HTTPSeeOther(location="./")
        return aiohttp_jinja2.render_template("login.html", request, {"failed": False})

    async def handle_login(self, request: web.Request) -> web.StreamResponse:
        """Check a posted secret; a right one sets the session cookie and goes to the page."""
        if self.sessions is None or self.options.secret is None:
            raise web.HTTPSeeOther(location="./")
        given = (await request.post()).get("secret")
        if isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.options.secret.encode()
        ):
            response = web.HTTPSeeOther(location="./")
            response.set_cookie(
                COOKIE,
                self.sessions.issue(),
                max_age=SESSION_SECONDS,
                httponly=True,
                samesite="Strict",
                secure=_is_https(request),
            )
            raise response
        await asyncio.sleep(LOGIN_FAILURE_DELAY)
        return aiohttp_jinja2.render_template("login.html", request, {"failed": True}, status=401)


def console_command() -> str:
    """The shell command textual-serve runs per page: this Python's console, no arguments."""
    return shlex.join([sys.executable, "-m", "aegis.console.cli"])


def console_environment(api_url: str, interval: float, token: str | None) -> dict[str, str]:
    """The variables that tell each console subprocess what ``aegis-console`` was told."""
    env = {"AEGIS_API_URL": api_url, "AEGIS_CONSOLE_INTERVAL": repr(interval)}
    if token is not None:
        env["AEGIS_ADMIN_TOKEN"] = token
    return env


def serve(options: WebOptions, console_env: Mapping[str, str]) -> None:
    """Serve the console until SIGINT or SIGTERM.

    textual-serve gives each console subprocess a copy of this process's
    environment, so ``console_env`` goes into it (and the login secret and any
    other admin token out of it)."""
    os.environ.pop(SECRET_VARIABLE, None)
    os.environ.pop("AEGIS_ADMIN_TOKEN", None)
    os.environ.update(console_env)
    ConsoleWebServer(console_command(), options).serve()
