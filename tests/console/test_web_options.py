"""When ``aegis-console --web`` refuses to start."""

from __future__ import annotations

import pytest
from aegis.console.web_options import WebOptions, is_loopback, refusal


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("console.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_needs_no_secret() -> None:
    assert refusal(WebOptions("127.0.0.1", 8080)) is None


def test_elsewhere_needs_a_secret() -> None:
    assert "AEGIS_CONSOLE_WEB_SECRET" in str(refusal(WebOptions("0.0.0.0", 8080)))
    assert refusal(WebOptions("0.0.0.0", 8080, "x" * 16)) is None


def test_a_short_secret_is_refused_anywhere() -> None:
    assert "at least 16" in str(refusal(WebOptions("127.0.0.1", 8080, "x" * 15)))
