"""What ``aegis-console --web`` was asked for, and whether it is safe to serve
(no web library imported here: ``--help`` and argument errors stay fast)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

SECRET_VARIABLE: Final = "AEGIS_CONSOLE_WEB_SECRET"  # noqa: S105 (its name, not a secret)
MIN_SECRET_LENGTH: Final = 16
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Where the web console listens and the secret a browser must give, if any."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    secret: str | None = field(default=None, repr=False)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(options: WebOptions) -> str | None:
    """Why ``options`` are unsafe to serve with, or None when they are fine."""
    if options.secret is None:
        if not is_loopback(options.host):
            return (
                f"--host {options.host} is not loopback: set {SECRET_VARIABLE} to a login "
                f"secret of at least {MIN_SECRET_LENGTH} characters, or a URL alone would "
                "give operator rights"
            )
        return None
    if len(options.secret) < MIN_SECRET_LENGTH:
        return f"{SECRET_VARIABLE} must be at least {MIN_SECRET_LENGTH} characters"
    return None
