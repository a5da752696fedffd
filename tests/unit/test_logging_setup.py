"""Production logs: one JSON object per line, tracebacks without local variables."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from aegis.router.logging_setup import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_and_no_secrets_from_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    # Patched in the test body: pytest swaps sys.stderr between setup and call.
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", "json")
    log = structlog.get_logger("aegis.test")

    def fail_with_a_secret_in_scope() -> None:
        password = "hunter2-secret"
        raise ValueError(f"bad input of length {len(password)}")

    try:
        fail_with_a_secret_in_scope()
    except ValueError:
        log.exception("it_failed", service="billing")
    log.debug("hidden_below_info")
    logging.getLogger("sanic.root").info("from sanic")

    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["it_failed", "from sanic"]
    assert lines[0]["logger"] == "aegis.test"
    assert lines[0]["exception"][0]["exc_type"] == "ValueError"
    assert lines[1]["logger"] == "sanic.root"
    assert "hunter2-secret" not in stderr.getvalue()
