"""Key-value log events on the standard library, so the SDK needs no logging package.

Each call is one event name plus fields, like structlog. The record carries
them as ``aegis_event`` and ``aegis_fields`` for structured handlers (the
router renders them as JSON); plain handlers get ``event key=value ...``.

Where the lines go: an application that configured logging (any handler on
the logger's way up, as ``logging.basicConfig`` or ``dictConfig`` add) gets
the SDK's records like any library's, at the levels it set. One that did not
would get Python's last resort instead: WARNING and above only, as a bare
``heartbeat_failed service=...`` with no time and no level, and none of the
INFO lines that say a failure is over (``heartbeat_recovered``,
``reregistered``). So while nothing is configured the SDK writes its own
lines to stderr, from INFO up, each with its time and level, and adds no
handler to any logger: the moment the application configures logging, this
default steps aside. ``logging.getLogger("aegis.sdk").setLevel(...)`` sets
its threshold either way.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

# Used while the application configured no handler: the SDK's INFO events are
# its few milestones (re-registered, recovered, waiting for a stale holder).
DEFAULT_LEVEL = logging.INFO


class DefaultFormatter(logging.Formatter):
    """``2026-05-01T12:00:00.123Z [warning  ] event [logger] key=value ...``, as the
    router's console format reads."""

    def format(self, record: logging.LogRecord) -> str:
        """One line: UTC time, level, event, logger name, fields."""
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        event = getattr(record, "aegis_event", None)
        fields: dict[str, object] = getattr(record, "aegis_fields", {})
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        head = f"{at.replace('+00:00', 'Z')} [{record.levelname.lower():<9}]"
        if event is None:
            return f"{head} {record.getMessage()}"
        return f"{head} {event} [{record.name}] {text}".rstrip()


class DefaultHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (as Python's last resort does)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(DefaultFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        """Write one line; a broken stderr is the logging module's usual error report."""
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


DEFAULT_HANDLER = DefaultHandler()


def has_handlers(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` would reach any handler: has logging been configured?

    The walk ``Logger.callHandlers`` makes, without Python's last resort.
    """
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def default_threshold(logger: logging.Logger) -> int:
    """The first level set on ``logger`` or an ancestor below the root, else DEFAULT_LEVEL.

    The root's own level (WARNING unless configured) is Python's default, not a choice
    about the SDK, so it is not asked.
    """
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if current.level != logging.NOTSET:
            return current.level
        current = current.parent
    return DEFAULT_LEVEL


class KeyValueLogger:
    """``log.info("event_name", key=value, ...)`` over a stdlib logger."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def debug(self, event: str, **fields: object) -> None:
        """Log at DEBUG."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        """Log at INFO."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        """Log at WARNING."""
        self._log(logging.WARNING, event, fields)

    def _log(self, level: int, event: str, fields: dict[str, object]) -> None:
        logger = self._logger
        extra = {"aegis_event": event, "aegis_fields": fields}
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        if has_handlers(logger):
            if logger.isEnabledFor(level):
                logger.log(level, "%s %s", event, text, extra=extra, stacklevel=3)
            return
        # Nothing configured: the default's own threshold and line, unless logging is
        # switched off (logging.disable, a disabled logger).
        if level < default_threshold(logger) or logger.disabled or logger.manager.disable >= level:
            return
        record = logger.makeRecord(
            logger.name, level, "(sdk)", 0, "%s %s", (event, text), None, extra=extra
        )
        if logger.filter(record):
            DEFAULT_HANDLER.handle(record)


def get_logger(name: str) -> KeyValueLogger:
    """The SDK's logger for ``name`` (an ``aegis.sdk...`` stdlib logger name)."""
    return KeyValueLogger(name)
