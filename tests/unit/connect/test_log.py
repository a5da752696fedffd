"""The SDK's log lines: with time and level while the application configured no logging,
and the application's own handlers and levels once it did."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from aegis.connect.log import get_logger

NAME = "aegis.sdk.logtest"
LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(?P<level>\w+) *\] (?P<event>\w+) "
    r"\[aegis\.sdk\.logtest\](?P<fields>.*)"
)


@pytest.fixture
def unconfigured() -> Iterator[logging.Logger]:
    """A logger whose records reach no handler, as in a program that never set up logging.

    (pytest gives the root logger handlers of its own: this one does not propagate.)
    """
    logger = logging.getLogger(NAME)
    logger.propagate = False
    yield logger
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    logger.handlers.clear()


def lines(err: str) -> list[dict[str, str]]:
    found = [LINE.fullmatch(line) for line in err.splitlines()]
    assert all(found), err
    return [m.groupdict() for m in found if m]


def test_unconfigured_lines_carry_time_and_level(
    unconfigured: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log = get_logger(NAME)
    log.warning("heartbeat_failed", service="billing", instance="billing-1", failures=1)
    log.info("heartbeat_recovered", service="billing", instance="billing-1", failures=1)
    log.info("reregistered", service="billing", instance="billing-1")
    log.debug("detail", n=1)

    # Python's last resort printed only the warning, bare: "heartbeat_failed service=...".
    assert lines(capsys.readouterr().err) == [
        {
            "level": "warning",
            "event": "heartbeat_failed",
            "fields": " service=billing instance=billing-1 failures=1",
        },
        {
            "level": "info",
            "event": "heartbeat_recovered",
            "fields": " service=billing instance=billing-1 failures=1",
        },
        {"level": "info", "event": "reregistered", "fields": " service=billing instance=billing-1"},
    ]


def test_a_level_set_on_the_sdk_logger_holds_without_handlers(
    unconfigured: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    unconfigured.setLevel(logging.WARNING)
    log = get_logger(NAME)
    log.info("reregistered", service="billing")
    log.warning("heartbeat_failed", service="billing")

    assert [line["event"] for line in lines(capsys.readouterr().err)] == ["heartbeat_failed"]


def test_configured_logging_takes_over_with_its_own_levels(
    unconfigured: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    unconfigured.addHandler(handler)
    unconfigured.setLevel(logging.WARNING)  # the application's choice
    log = get_logger(NAME)
    log.info("reregistered", service="billing")
    log.warning("heartbeat_failed", service="billing", failures=2)

    assert capsys.readouterr().err == ""  # no second copy of the application's lines
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "heartbeat_failed service=billing failures=2")
    ]
    assert records[0].aegis_fields == {"service": "billing", "failures": 2}  # type: ignore[attr-defined]


def test_logging_disabled_is_silent(
    unconfigured: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.disable(logging.CRITICAL)
    try:
        get_logger(NAME).warning("heartbeat_failed", service="billing")
    finally:
        logging.disable(logging.NOTSET)

    assert capsys.readouterr().err == ""
