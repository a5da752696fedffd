"""``aegis-console``: command line and environment to a running dashboard."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Final

from .web_options import DEFAULT_HOST, DEFAULT_PORT, SECRET_VARIABLE, WebOptions, refusal

DEFAULT_API_URL: Final = "http://127.0.0.1:8000"
DEFAULT_INTERVAL: Final = 2.0
MIN_INTERVAL: Final = 0.2


@dataclass(frozen=True, slots=True)
class Options:
    """What the console was asked to do."""

    api_url: str
    interval: float
    token: str | None
    web: WebOptions | None = None  # serve it to browsers instead of this terminal


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL:g} seconds, got {text}")
    return value


def _api_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must start with http:// or https://, got {text!r}")
    return url


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``env``."""
    parser = argparse.ArgumentParser(
        prog="aegis-console",
        description=(
            "Live terminal dashboard of an AegisIPC router: services, their instances "
            "and statuses, polled from the router's admin REST API. Press ? inside for keys."
        ),
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        type=_api_url,
        default=env.get("AEGIS_API_URL", DEFAULT_API_URL),
        help=f"base URL of the router's REST API (env AEGIS_API_URL, default {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_interval,
        default=env.get("AEGIS_CONSOLE_INTERVAL", str(DEFAULT_INTERVAL)),
        help=(
            "seconds between polls; after failures the wait doubles up to 30 s "
            f"(env AEGIS_CONSOLE_INTERVAL, default {DEFAULT_INTERVAL:g}, at least {MIN_INTERVAL:g})"
        ),
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        default=env.get("AEGIS_CONSOLE_TOKEN") or env.get("AEGIS_ADMIN_TOKEN") or None,
        help=(
            "admin API token, sent as 'Authorization: Bearer TOKEN': a read token shows the "
            "registry, an operator token also drains and deregisters (env AEGIS_CONSOLE_TOKEN, "
            "else AEGIS_ADMIN_TOKEN; prefer the variable: arguments show in the process list)"
        ),
    )
    web = parser.add_argument_group(
        "web",
        "serve the console to browsers (textual-serve): each open page runs its own console",
    )
    web.add_argument("--web", action="store_true", help="serve the console over HTTP")
    web.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=(
            f"address to listen on (default {DEFAULT_HOST}); any other than loopback needs "
            f"a login secret in env {SECRET_VARIABLE}"
        ),
    )
    web.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be 1 to 65535, got {text}")
    return value


def parse_options(argv: Sequence[str] | None, env: Mapping[str, str]) -> Options:
    """Parse ``argv`` with ``env`` defaults; exits with status 2 on a bad value."""
    # argparse runs ``type`` on string defaults too, so a bad environment value is
    # reported like a bad argument.
    parser = build_parser(env)
    args = parser.parse_args(argv)
    web = None
    if args.web:
        web = WebOptions(host=args.host, port=args.port, secret=env.get(SECRET_VARIABLE) or None)
        if problem := refusal(web):
            parser.error(problem)
    return Options(api_url=args.api, interval=args.interval, token=args.token, web=web)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard until the user quits; 0 on a normal exit."""
    options = parse_options(argv, os.environ)
    if options.web is not None:
        return serve_web(options, options.web)
    # Imported late so ``--help`` and argument errors answer without loading Textual.
    from .ui import ConsoleApp

    app = ConsoleApp(options.api_url, interval=options.interval, token=options.token)
    app.run()
    return app.return_code or 0


def serve_web(options: Options, web: WebOptions) -> int:
    """Serve the console to browsers until SIGINT or SIGTERM; 2 without textual-serve."""
    if find_spec("textual_serve") is None:
        print(
            "aegis-console --web needs textual-serve: pip install 'aegis-ipc[console]'",
            file=sys.stderr,
        )
        return 2
    from .web import console_environment, serve

    serve(web, console_environment(options.api_url, options.interval, options.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
