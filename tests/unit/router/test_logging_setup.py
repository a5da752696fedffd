"""Production logs: one JSON object per line, tracebacks without local variables."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from aegis.router.logging_setup import (
    ReportedError,
    configure_logging,
    debug_enabled,
    reset_logging,
    utc_stamp,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    reset_logging()


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
    logging.getLogger("sanic.root").info("sanic start-up chatter")
    logging.getLogger("sanic.root").warning("from sanic")

    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["it_failed", "from sanic"]
    assert lines[0]["logger"] == "aegis.test"
    assert lines[0]["exception"][0]["exc_type"] == "ValueError"
    assert lines[1]["logger"] == "sanic.root"
    assert "hunter2-secret" not in stderr.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_are_stamped_in_utc_iso_8601_with_a_z(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", "json")
    before = datetime.now(UTC)
    structlog.get_logger("aegis.test").info("stamped")
    logging.getLogger("sanic.root").warning("from sanic")
    after = datetime.now(UTC)

    stamps = [json.loads(line)["timestamp"] for line in stderr.getvalue().splitlines()]
    assert len(stamps) == 2
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp), stamp
        assert before <= datetime.fromisoformat(stamp) <= after


@pytest.mark.usefixtures("restore_logging")
def test_console_tracebacks_show_no_local_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", "console")

    def fail_with_a_secret_in_scope() -> None:
        password = "-".join(["hunter2", "secret"])  # not in the source lines rich shows
        raise ValueError(f"bad input of length {len(password)}")

    try:
        fail_with_a_secret_in_scope()
    except ValueError:
        structlog.get_logger("aegis.test").exception("it_failed")

    assert "fail_with_a_secret_in_scope" in stderr.getvalue()  # frames are shown
    assert "hunter2-secret" not in stderr.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_sanic_does_not_log_a_failure_that_was_reported_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", "json")
    sanic_error = logging.getLogger("sanic.error")

    for error in (ReportedError("said once already"), RuntimeError("news")):
        try:
            raise error
        except Exception:
            sanic_error.exception("Experienced exception while trying to serve")

    (line,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert "RuntimeError" in json.dumps(line["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_the_hot_paths_debug_switch_follows_the_configured_level() -> None:
    configure_logging("INFO", "json")
    assert not debug_enabled()
    configure_logging("DEBUG", "json")
    assert debug_enabled()
    configure_logging("WARNING", "json")
    reset_logging()
    assert debug_enabled()  # structlog's default: every level


@pytest.mark.parametrize(
    "ns",
    [
        0,
        1_765_119_600_000_000_000,  # a whole second: no fraction, as isoformat writes it
        1_765_119_600_000_001_000,
        1_765_119_600_123_456_789,  # truncated to the microsecond
        1_765_119_659_999_999_999,
        4_102_444_799_999_999_000,  # the last microsecond of 2099
    ],
)
def test_each_line_is_stamped_as_structlogs_iso_utc_stamper_would(ns: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert utc_stamp(ns) == moment.isoformat().replace("+00:00", "Z")
    assert utc_stamp(ns) == utc_stamp(ns)  # made again from the second kept
