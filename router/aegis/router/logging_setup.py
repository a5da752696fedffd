"""structlog for the router, and Sanic's stdlib logs routed through the same renderer."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from .settings import LogFormat


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that knows the name given to ``get_logger`` (for ``logger``)."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name


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


def configure_logging(level: str, fmt: LogFormat) -> None:
    """One event per line: JSON in production, coloured key=value on a terminal.

    Our own events go straight from structlog to stderr: routing them through
    stdlib logging cost more than half of a registration's CPU time. Sanic's
    stdlib records go through the same renderer by a ProcessorFormatter.
    """
    renderer: structlog.typing.Processor
    tail: list[structlog.typing.Processor] = []
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        # Frames only, no local variables: locals hold secrets (passwords, sessions).
        tail.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer()
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Sanic configures its own loggers with their own handlers; send them to ours.
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets"):
        sanic_logger = logging.getLogger(name)
        sanic_logger.handlers.clear()
        sanic_logger.propagate = True
