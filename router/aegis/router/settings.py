"""Router settings: environment variables with matching command-line flags.

``Settings`` is the one table of every setting with its default, parser and
help (``settings_doc.py`` writes docs/configuration.md from it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn

from aegis.router.domain import LaneLimits, Timings
from aegis.router.leases.membership import MEMBER_TTL, shortest_unhealthy_after
from aegis.router.logging_setup import LogFormat
from aegis.wire.messages import DEFAULT_MAX_METADATA_BYTES

StoreKind = Literal["memory", "jetstream"]


TRUTHY = frozenset({"1", "true", "yes", "on"})
FALSY = frozenset({"0", "false", "no", "off"})


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/aegis``, else ``~/.local/share/aegis``."""
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aegis"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # argparse would name this function ("invalid _positive_int value")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _one_of(*allowed: str) -> Callable[[str], str]:
    """A parser accepting ``allowed`` in any case, returned as spelled in ``allowed``."""
    by_lower = {choice.lower(): choice for choice in allowed}
    wanted = ", ".join(allowed[:-1]) + " or " + allowed[-1]

    def parse(text: str) -> str:
        try:
            return by_lower[text.lower()]
        except KeyError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None

    return parse


_log_level = _one_of("DEBUG", "INFO", "WARNING", "ERROR")
_log_format = _one_of("json", "console")
_store = _one_of("memory", "jetstream")


def _flag(text: str) -> bool:
    return text.lower() in TRUTHY


def _on_off(text: str) -> bool:
    """A switch that is on by default, so turning it off must be spelled out."""
    if text.lower() in TRUTHY:
        return True
    if text.lower() in FALSY:
        return False
    raise argparse.ArgumentTypeError(f"must be on or off (1/0, true/false, yes/no), got {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0  # argparse would name this function ("invalid _seconds value")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(f"must be letters, digits, _ and -; got {text!r}")
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake costs one line and a hint, not the whole usage first."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2,
            f"{self.prog}: error: {message}\n"
            f"  hint: {self.prog} --help lists every option and its environment variable\n",
        )


def option(
    default: Any,
    text: str,
    parse: Callable[[str], Any] = str,
    *,
    env: str | None = None,
    secret: bool = False,
    shown_default: bool = True,
) -> Any:
    """A setting: its default (stated here only), its parser, its help; flag and variable
    follow from the field name (``http_port``: ``--http-port``, ``AEGIS_HTTP_PORT``)."""
    metadata = {"text": text, "parse": parse, "env": env, "shown": shown_default}
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the router can be told: one typed table. See ``aegis-router --help``."""

    nats_url: str | None = option(
        None,
        "NATS server(s) to use, comma-separated. Unset: start the bundled nats-server.",
        secret=True,  # may hold a password
    )
    nats_user: str | None = option(None, "NATS user name (with --nats-password).")
    nats_password: str | None = option(
        None,
        "NATS password (prefer the variable: arguments show in the process list).",
        secret=True,
    )
    nats_token: str | None = option(
        None, "NATS authentication token (prefer the variable).", secret=True
    )
    nats_nkey_seed: Path | None = option(None, "File holding the NKey seed to sign in with.", Path)
    nats_creds: Path | None = option(None, "NATS .creds file (user JWT and NKey seed).", Path)
    nats_tls_ca: Path | None = option(None, "CA bundle to verify the NATS server with.", Path)
    nats_tls_cert: Path | None = option(None, "Client certificate for NATS (mutual TLS).", Path)
    nats_tls_key: Path | None = option(None, "Private key of the client certificate.", Path)
    admin_token: str | None = option(
        None,
        "Bearer token of the operator named admin: every /api/v1/admin request must carry "
        "it or a token of --tokens-file (prefer the variable: arguments show in the process "
        "list). With neither set, the admin API is open and listens on loopback only.",
        secret=True,
    )
    tokens_file: Path | None = option(
        None,
        "File of named admin API tokens, one 'NAME ROLE sha256:HEX' a line, ROLE read "
        "(listings, detail, events) or operator (also deregister and maintenance); "
        "'aegis-router token NAME --role ROLE' prints a new one. Read at start.",
        Path,
    )
    insecure: bool = option(
        False,
        "Serve the admin API on a non-loopback address without a token (anyone who "
        "can reach it can read the registry and deregister instances).",
        _flag,
        shown_default=False,
    )
    http_host: str = option("127.0.0.1", "Address of the admin REST API.")
    http_port: int = option(8000, "Port of the admin REST API.", _port)
    embedded_nats_host: str = option(
        "127.0.0.1", "Address the bundled nats-server listens on (only without --nats-url)."
    )
    embedded_nats_port: int = option(
        4222, "Port the bundled nats-server listens on (only without --nats-url).", _port
    )
    data_dir: Path = option(
        lambda: default_data_dir(os.environ),
        "Where the bundled nats-server keeps JetStream data. "
        "Default: $XDG_DATA_HOME/aegis or ~/.local/share/aegis.",
        Path,
        shown_default=False,
    )
    log_level: str = option("INFO", "DEBUG, INFO, WARNING or ERROR.", _log_level)
    log_format: LogFormat = option(
        "json",
        "json (one JSON object per line) or console. Default: console on a terminal, else json.",
        _log_format,
        shown_default=False,
    )
    max_in_flight: int = option(
        256, "NATS requests handled at once; more wait in NATS's queue.", _positive_int
    )
    max_request_bytes: int = option(
        64 * 1024, "Largest request body accepted (larger: 413 PAYLOAD_TOO_LARGE).", _positive_int
    )
    max_metadata_bytes: int = option(
        DEFAULT_MAX_METADATA_BYTES,
        "Largest MessagePack-encoded metadata accepted (larger: 400).",
        _positive_int,
    )
    max_pending: int = option(
        10_000,
        "Requests per subject that may wait beyond those in flight; past that NATS drops "
        "them (clients time out and retry) instead of the router's memory growing.",
        _positive_int,
    )
    register_workers: int = option(
        32,
        "Registrations served at once, in a lane of their own (heartbeats never wait behind them).",
        _positive_int,
    )
    register_max_wait: float = option(
        1.0,
        "Seconds a registration may wait for a worker; while the oldest waiting one has "
        "waited this long, new ones are refused at once with 503 OVERLOADED and a "
        "retry_after.",
        _seconds,
    )
    request_deadline: float = option(
        5.0,
        "Seconds after which a waiting registration's caller has given up (the SDK's "
        "default timeout): it is dropped, not served.",
        _seconds,
    )
    max_instances_per_service: int = option(
        100_000,
        "Live or stored instances one service may have; more: 429 LIMIT_EXCEEDED.",
        _positive_int,
    )
    max_instances: int = option(
        1_000_000,
        "Instances the registry may hold in all; more: 429 LIMIT_EXCEEDED.",
        _positive_int,
    )
    max_event_streams: int = option(
        100,
        "Open /api/v1/admin/events streams this router serves at once; more: 503 TOO_MANY_STREAMS.",
        _positive_int,
    )
    workers: int = option(
        1,
        "Router worker processes, each serving HTTP and NATS (more than 1 needs the "
        "jetstream store).",
        _positive_int,
        env="AEGIS_HTTP_WORKERS",
    )
    store: StoreKind = option(
        "jetstream",
        "Where the registry lives: jetstream (a replicated NATS key-value bucket; survives "
        "restarts, shared by several routers) or memory (one process, gone on restart).",
        _store,
    )
    kv_bucket: str = option("aegis_registry", "JetStream key-value bucket of the registry.", _name)
    kv_replicas: int = option(
        1,
        "Replicas of the bucket and of its _routers membership bucket (3 on a 3-node "
        "cluster). The router creates them with this count, and refuses to start on an "
        "existing one that has another.",
        _positive_int,
    )
    router_id: str | None = option(
        None,
        "This router's name among routers: in its own NATS subjects, logs and membership "
        "(letters, digits, _ and -). Random by default; with several workers each adds "
        "its process id.",
        _name,
        shown_default=False,
    )
    heartbeat_interval: float = option(
        5.0, "Seconds between heartbeats; told to clients in every register reply.", _seconds
    )
    unhealthy_after: float = option(
        15.0,
        "Seconds without contact before an instance is UNHEALTHY; with the jetstream store, "
        f"above {MEMBER_TTL:g} s plus the heartbeat interval.",
        _seconds,
    )
    offline_after: float = option(
        30.0,
        "Seconds without contact before an instance is OFFLINE (and may be taken over).",
        _seconds,
    )
    remove_after: float = option(
        300.0, "Seconds without contact before an instance is removed from the registry.", _seconds
    )
    lease_refresh: float = option(
        120.0,
        "Seconds between store writes of a steadily heartbeating instance's contact (in "
        "between, contacts live in the memory of the router holding its lease); at least "
        "max(30, unhealthy_after).",
        _seconds,
    )
    micro_discovery: bool = option(
        True,
        "List the NATS micro services on the bus (ADR-32, found by $SRV.INFO) as instances "
        "of the registry. Default: on.",
        _on_off,
        shown_default=False,
    )
    micro_poll: float = option(
        5.0, "Seconds between two $SRV.INFO polls for NATS micro services.", _seconds
    )
    shared_subjects: bool = option(
        True,
        "Also answer the v1 shared subjects ipc.service.register|heartbeat|deregister|discover "
        "(and ipc.router.<id>.heartbeat), besides the per-service ipc.svc.<service>.* ones. "
        "Off: only the per-service subjects, whose NATS permissions can limit a credential "
        "to its own services; v1 clients on the shared subjects then get no responders. "
        "Default: on.",
        _on_off,
        shown_default=False,
    )
    nats_connect_attempts: int = 5  # not a user setting: tests lower it

    @property
    def takes_tokens(self) -> bool:
        """The admin API asks for a bearer token (otherwise it is open)."""
        return bool(self.admin_token) or self.tokens_file is not None

    @property
    def register_lane(self) -> LaneLimits:
        """How the registration lane bounds its work (validated when settings load)."""
        return LaneLimits(self.register_workers, self.register_max_wait, self.request_deadline)

    @property
    def timings(self) -> Timings:
        """The liveness timings (validated when settings load)."""
        return Timings(
            self.heartbeat_interval,
            self.unhealthy_after,
            self.offline_after,
            self.remove_after,
            self.lease_refresh,
        )


@dataclass(frozen=True, slots=True)
class Option:
    """One row of the settings table, as the command line and the environment see it."""

    name: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    text: str
    default: Any
    shown_default: bool


def options() -> list[Option]:
    """Every user setting, in table order."""
    defaults = Settings(data_dir=Path("."))
    return [
        Option(
            name=f.name,
            flag="--" + f.name.replace("_", "-"),
            env=f.metadata["env"] or "AEGIS_" + f.name.upper(),
            parse=f.metadata["parse"],
            text=f.metadata["text"],
            default=getattr(defaults, f.name),
            shown_default=f.metadata["shown"],
        )
        for f in fields(Settings)
        if f.metadata
    ]


def build_parser() -> argparse.ArgumentParser:
    """The ``aegis-router`` command line."""
    parser = _Parser(
        prog="aegis-router",
        description="AegisIPC router: service registry over NATS with an admin REST API. "
        "Every option can also be set by the environment variable named in brackets; "
        "a flag wins over its variable.",
    )
    for opt in options():
        if opt.parse is _flag:
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_true",
                default=None,
                help=f"{opt.text} [{opt.env}=1]",
            )
            continue
        if opt.parse is _on_off:
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{opt.text} [{opt.env}=0 turns it off]",
            )
            continue
        shown = f" Default: {opt.default}." if opt.shown_default and opt.default is not None else ""
        parser.add_argument(
            opt.flag, dest=opt.name, type=opt.parse, help=f"{opt.text}{shown} [{opt.env}]"
        )
    return parser


def load_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags, then environment, then defaults; exits with usage on bad values."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, object] = {"data_dir": default_data_dir(env)}
    for opt in options():
        given = getattr(args, opt.name)
        if given is None and env.get(opt.env):
            try:
                given = opt.parse(env[opt.env])
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{opt.env}={env[opt.env]!r}: {exc}")
        if given is not None:
            values[opt.name] = given
    values.setdefault("log_format", "console" if sys.stderr.isatty() else "json")
    settings = Settings(**values)  # type: ignore[arg-type]
    if not settings.takes_tokens and not settings.insecure and not is_loopback(settings.http_host):
        parser.error(
            f"refusing to serve the admin API on {settings.http_host} without a token: set "
            "AEGIS_TOKENS_FILE (or --tokens-file) or AEGIS_ADMIN_TOKEN (or --admin-token), "
            "or pass --insecure / AEGIS_INSECURE=1 to accept that anyone who reaches it can "
            "read and change the registry"
        )
    if settings.workers > 1 and settings.store == "memory":
        parser.error(
            "--workers / AEGIS_HTTP_WORKERS above 1 needs --store / AEGIS_STORE=jetstream: "
            "an in-memory registry cannot be shared by several processes"
        )
    if settings.register_max_wait > settings.request_deadline:
        parser.error(
            f"--register-max-wait / AEGIS_REGISTER_MAX_WAIT ({settings.register_max_wait}) "
            f"must not exceed --request-deadline / AEGIS_REQUEST_DEADLINE "
            f"({settings.request_deadline}): a registration would be queued only to be dropped"
        )
    try:
        settings.timings  # noqa: B018 - validates the order of the deadlines
    except ValueError as exc:
        parser.error(
            f"{exc} (set by --heartbeat-interval / AEGIS_HEARTBEAT_INTERVAL, "
            "--unhealthy-after / AEGIS_UNHEALTHY_AFTER, --offline-after / AEGIS_OFFLINE_AFTER, "
            "--remove-after / AEGIS_REMOVE_AFTER)"
        )
    bound = shortest_unhealthy_after(settings.heartbeat_interval)
    if settings.store == "jetstream" and settings.unhealthy_after <= bound:
        # Only shared leases (the jetstream store) need it: the memory store has no membership.
        parser.error(
            f"--unhealthy-after / AEGIS_UNHEALTHY_AFTER is {settings.unhealthy_after:g} s; with "
            f"the jetstream store it must be above {bound:g} s: the {MEMBER_TTL:g} s a silent "
            "router keeps its leases, plus one --heartbeat-interval / AEGIS_HEARTBEAT_INTERVAL "
            f"({settings.heartbeat_interval:g} s). Shorter, a router back from a pause of up to "
            f"{MEMBER_TTL:g} s may mark live instances UNHEALTHY before it reads their "
            "heartbeats. Raise it, "
            "shorten the heartbeat interval, or run one router with --store memory"
        )
    return settings
