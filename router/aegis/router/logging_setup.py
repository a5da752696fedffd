"""structlog for the router, and Sanic's stdlib logs routed through the same renderer."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson
import structlog


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that knows the name given to ``get_logger`` (for ``logger``)."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name


LogFormat = Literal["json", "console"]


def _named_logger(*args: object) -> _NamedWriteLogger:
    return _NamedWriteLogger(str(args[0]) if args else "aegis")


def _sdk_event(
    _logger: object, _name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Lift the SDK's key-value events (stdlib records) back into structured fields."""
    record = event_dict.get("_record")
    event = getattr(record, "aegis_event", None)
    if event is not None:
        event_dict["event"] = event
        event_dict.update(getattr(record, "aegis_fields", {}))
    return event_dict


def _orjson_dumps(value: object, **_: object) -> str:
    # orjson renders a log line several times faster than the json module.
    return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


# The second last stamped and its text up to the seconds.
_stamped_second: list[Any] = [None, ""]


def utc_stamp(ns: int) -> str:
    """``ns`` (nanoseconds since the epoch) as structlog's ``TimeStamper(fmt="iso",
    utc=True)`` writes the moment: microseconds, ``Z``, no fraction when it is zero.

    The date and time to the second are formatted once per second: every line
    carries a stamp, and isoformat's was most of the cost of a log line's chain.
    """
    second, micro = divmod(ns // 1000, 1_000_000)
    if _stamped_second[0] != second:
        _stamped_second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    text: str = _stamped_second[1]
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


def _add_timestamp(
    _logger: object, _name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # datetime.now's clock (the system's, truncated to the microsecond).
    event_dict["timestamp"] = utc_stamp(time.time_ns())
    return event_dict


class ReportedError(RuntimeError):
    """A failure already logged as its own event where it happened: nobody logs it again.

    ``exit_code`` is the router's: 1 when a dependency fails, 2 for configuration.
    """

    exit_code = 1


def _drop_reported_startup_failure(record: logging.LogRecord) -> bool:
    # Sanic logs every exception that ends serving ("Experienced exception while
    # trying to serve", with frames) before re-raising it; ours are logged once
    # already, as a named event.
    exc = record.exc_info[1] if record.exc_info else None
    return not (record.name == "sanic.error" and isinstance(exc, ReportedError))


# Whether debug events are logged: structlog's default logs every level, and
# configure_logging sets it. Read on every request (debug_enabled): a flag,
# where asking a logger proxy would be a noticeable share of a steady heartbeat.
_debug = True


def debug_enabled() -> bool:
    """Whether debug events are logged (as ``configure_logging`` last set the level)."""
    return _debug


def reset_logging() -> None:
    """Back to structlog's defaults (every level logged) and no root handlers."""
    global _debug
    _debug = True
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def configure_logging(level: str, fmt: LogFormat) -> None:
    """One event per line: JSON in production, coloured key=value on a terminal.

    Our own events go straight from structlog to stderr: routing them through
    stdlib logging was most of a registration's CPU time (docs/performance.md). Sanic's
    stdlib records go through the same renderer by a ProcessorFormatter.
    """
    global _debug
    _debug = logging.getLevelName(level) <= logging.DEBUG
    renderer: structlog.typing.Processor
    tail: list[structlog.typing.Processor] = []
    # Frames only, never local variables, in both formats: locals hold secrets
    # (passwords, tokens, sessions).
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        tail.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        )
    stamp = _add_timestamp
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
            *tail,
            renderer,
        ],
        logger_factory=_named_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _sdk_event,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
                *tail,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_drop_reported_startup_failure)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Sanic configures its own loggers with their own handlers; send them to ours.
    # Its start-up chatter (workers, extensions) is debug detail to an operator:
    # router_ready says what runs where.
    sanic_level = level if level == "DEBUG" else "WARNING"
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets"):
        sanic_logger = logging.getLogger(name)
        sanic_logger.handlers.clear()
        sanic_logger.propagate = True
        sanic_logger.setLevel(sanic_level)
