"""``aegis-console``: command line and environment to a running dashboard."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_API_URL: Final = "http://127.0.0.1:8000"
DEFAULT_INTERVAL: Final = 2.0
MIN_INTERVAL: Final = 0.2


@dataclass(frozen=True, slots=True)
class Options:
    """What the console was asked to do."""

    api_url: str
    interval: float
    token: str | None


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
    return parser


def parse_options(argv: Sequence[str] | None, env: Mapping[str, str]) -> Options:
    """Parse ``argv`` with ``env`` defaults; exits with status 2 on a bad value."""
    # argparse runs ``type`` on string defaults too, so a bad environment value is
    # reported like a bad argument.
    args = build_parser(env).parse_args(argv)
    return Options(api_url=args.api, interval=args.interval, token=args.token)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard until the user quits; 0 on a normal exit."""
    options = parse_options(argv, os.environ)
    # Imported late so ``--help`` and argument errors answer without loading Textual.
    from .ui import ConsoleApp

    app = ConsoleApp(options.api_url, interval=options.interval, token=options.token)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
