"""Key-value log events on the standard library, so the SDK needs no logging package.

Each call is one event name plus fields, like structlog. The record carries
them as ``aegis_event`` and ``aegis_fields`` for structured handlers (the
router renders them as JSON); plain handlers get ``event key=value ...``.
"""

from __future__ import annotations

import logging


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
        if not self._logger.isEnabledFor(level):
            return
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        self._logger.log(
            level,
            "%s %s",
            event,
            text,
            extra={"aegis_event": event, "aegis_fields": fields},
            stacklevel=3,
        )


def get_logger(name: str) -> KeyValueLogger:
    """The SDK's logger for ``name`` (an ``aegis.sdk...`` stdlib logger name)."""
    return KeyValueLogger(name)
