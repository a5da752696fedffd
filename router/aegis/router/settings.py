"""Router settings: environment variables with matching command-line flags."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aegis.wire.messages import DEFAULT_MAX_METADATA_BYTES

from .domain import Timings

LogFormat = Literal["json", "console"]
StoreKind = Literal["memory", "jetstream"]


TRUTHY = frozenset({"1", "true", "yes", "on"})


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


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the router can be told. See ``aegis-router --help``."""

    nats_url: str | None = field(default=None, repr=False)  # may hold a password
    nats_user: str | None = None
    nats_password: str | None = field(default=None, repr=False)
    nats_token: str | None = field(default=None, repr=False)
    nats_nkey_seed: Path | None = None
    nats_creds: Path | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    admin_token: str | None = field(default=None, repr=False)
    insecure: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    embedded_nats_host: str = "127.0.0.1"
    embedded_nats_port: int = 4222
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    max_in_flight: int = 256
    max_request_bytes: int = 64 * 1024
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    max_pending: int = 10_000
    max_instances_per_service: int = 100_000
    max_instances: int = 1_000_000
    nats_connect_attempts: int = 5
    workers: int = 1
    store: StoreKind = "jetstream"
    kv_bucket: str = "aegis_registry"
    kv_replicas: int = 1
    heartbeat_interval: float = 5.0
    unhealthy_after: float = 15.0
    offline_after: float = 30.0
    remove_after: float = 300.0

    @property
    def timings(self) -> Timings:
        """The liveness timings (validated when settings load)."""
        return Timings(
            self.heartbeat_interval, self.unhealthy_after, self.offline_after, self.remove_after
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _bucket(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(f"bucket names are letters, digits, _ and -; got {text!r}")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


# (flag, env var, type, help) — one table so flags and env vars cannot drift apart.
_OPTIONS: list[tuple[str, str, object, str]] = [
    (
        "--nats-url",
        "AEGIS_NATS_URL",
        str,
        "NATS server(s) to use, comma-separated. Unset: start the bundled nats-server.",
    ),
    ("--nats-user", "AEGIS_NATS_USER", str, "NATS user name (with --nats-password)."),
    (
        "--nats-password",
        "AEGIS_NATS_PASSWORD",
        str,
        "NATS password (prefer the variable: arguments show in the process list).",
    ),
    ("--nats-token", "AEGIS_NATS_TOKEN", str, "NATS authentication token (prefer the variable)."),
    (
        "--nats-nkey-seed",
        "AEGIS_NATS_NKEY_SEED",
        Path,
        "File holding the NKey seed to sign in with.",
    ),
    ("--nats-creds", "AEGIS_NATS_CREDS", Path, "NATS .creds file (user JWT and NKey seed)."),
    ("--nats-tls-ca", "AEGIS_NATS_TLS_CA", Path, "CA bundle to verify the NATS server with."),
    ("--nats-tls-cert", "AEGIS_NATS_TLS_CERT", Path, "Client certificate for NATS (mutual TLS)."),
    ("--nats-tls-key", "AEGIS_NATS_TLS_KEY", Path, "Private key of the client certificate."),
    (
        "--admin-token",
        "AEGIS_ADMIN_TOKEN",
        str,
        "Bearer token every /api/v1/admin request must carry (prefer the variable: "
        "arguments show in the process list). Unset: the admin API listens on loopback only.",
    ),
    ("--http-host", "AEGIS_HTTP_HOST", str, "Address of the admin REST API."),
    ("--http-port", "AEGIS_HTTP_PORT", _port, "Port of the admin REST API."),
    (
        "--embedded-nats-host",
        "AEGIS_EMBEDDED_NATS_HOST",
        str,
        "Address the bundled nats-server listens on (only without --nats-url).",
    ),
    (
        "--embedded-nats-port",
        "AEGIS_EMBEDDED_NATS_PORT",
        _port,
        "Port the bundled nats-server listens on (only without --nats-url).",
    ),
    ("--data-dir", "AEGIS_DATA_DIR", Path, "Where the bundled nats-server keeps JetStream data."),
    ("--log-level", "AEGIS_LOG_LEVEL", _log_level, "DEBUG, INFO, WARNING or ERROR."),
    (
        "--log-format",
        "AEGIS_LOG_FORMAT",
        _log_format,
        "json (one JSON object per line) or console. Default: console on a terminal, else json.",
    ),
    (
        "--max-in-flight",
        "AEGIS_MAX_IN_FLIGHT",
        _positive_int,
        "NATS requests handled at once; more wait in NATS's queue.",
    ),
    (
        "--max-request-bytes",
        "AEGIS_MAX_REQUEST_BYTES",
        _positive_int,
        "Largest request body accepted (larger: 413 PAYLOAD_TOO_LARGE).",
    ),
    (
        "--max-metadata-bytes",
        "AEGIS_MAX_METADATA_BYTES",
        _positive_int,
        "Largest MessagePack-encoded metadata accepted (larger: 400).",
    ),
    (
        "--max-pending",
        "AEGIS_MAX_PENDING",
        _positive_int,
        "Requests per subject that may wait beyond those in flight; past that NATS drops "
        "them (clients time out and retry) instead of the router's memory growing.",
    ),
    (
        "--max-instances-per-service",
        "AEGIS_MAX_INSTANCES_PER_SERVICE",
        _positive_int,
        "Live or stored instances one service may have; more: 429 LIMIT_EXCEEDED.",
    ),
    (
        "--max-instances",
        "AEGIS_MAX_INSTANCES",
        _positive_int,
        "Instances the registry may hold in all; more: 429 LIMIT_EXCEEDED.",
    ),
    (
        "--workers",
        "AEGIS_HTTP_WORKERS",
        _positive_int,
        "Router worker processes, each serving HTTP and NATS (more than 1 needs the "
        "jetstream store).",
    ),
    (
        "--store",
        "AEGIS_STORE",
        _store,
        "Where the registry lives: jetstream (a replicated NATS key-value bucket; survives "
        "restarts, shared by several routers) or memory (one process, gone on restart).",
    ),
    ("--kv-bucket", "AEGIS_KV_BUCKET", _bucket, "JetStream key-value bucket of the registry."),
    (
        "--kv-replicas",
        "AEGIS_KV_REPLICAS",
        _positive_int,
        "Replicas of the bucket when the router creates it (3 on a 3-node cluster).",
    ),
    (
        "--heartbeat-interval",
        "AEGIS_HEARTBEAT_INTERVAL",
        _seconds,
        "Seconds between heartbeats; told to clients in every register reply.",
    ),
    (
        "--unhealthy-after",
        "AEGIS_UNHEALTHY_AFTER",
        _seconds,
        "Seconds without contact before an instance is UNHEALTHY.",
    ),
    (
        "--offline-after",
        "AEGIS_OFFLINE_AFTER",
        _seconds,
        "Seconds without contact before an instance is OFFLINE (and may be taken over).",
    ),
    (
        "--remove-after",
        "AEGIS_REMOVE_AFTER",
        _seconds,
        "Seconds without contact before an instance is removed from the registry.",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``aegis-router`` command line."""
    parser = argparse.ArgumentParser(
        prog="aegis-router",
        description="AegisIPC router: service registry over NATS with an admin REST API. "
        "Every option can also be set by the environment variable named in brackets; "
        "a flag wins over its variable.",
    )
    defaults = Settings()
    for flag, env, kind, text in _OPTIONS:
        attr = flag[2:].replace("-", "_")
        default = getattr(defaults, attr)
        shown = "" if default is None or attr == "log_format" else f" Default: {default}."
        parser.add_argument(flag, dest=attr, type=kind, help=f"{text}{shown} [{env}]")  # type: ignore[arg-type]
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="Serve the admin API on a non-loopback address without a token (anyone who "
        "can reach it can read the registry and deregister instances). [AEGIS_INSECURE=1]",
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
    for flag, var, kind, _ in _OPTIONS:
        attr = flag[2:].replace("-", "_")
        given = getattr(args, attr)
        if given is None and env.get(var):
            try:
                given = kind(env[var])  # type: ignore[operator]
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{var}={env[var]!r}: {exc}")
        if given is not None:
            values[attr] = given
    values.setdefault("log_format", "console" if sys.stderr.isatty() else "json")
    values["insecure"] = args.insecure or env.get("AEGIS_INSECURE", "").lower() in TRUTHY
    settings = Settings(**values)  # type: ignore[arg-type]
    if not settings.admin_token and not settings.insecure and not is_loopback(settings.http_host):
        parser.error(
            f"refusing to serve the admin API on {settings.http_host} without a token: set "
            "AEGIS_ADMIN_TOKEN (or --admin-token), or pass --insecure / AEGIS_INSECURE=1 "
            "to accept that anyone who reaches it can read and change the registry"
        )
    if settings.workers > 1 and settings.store == "memory":
        parser.error(
            "--workers / AEGIS_HTTP_WORKERS above 1 needs --store / AEGIS_STORE=jetstream: "
            "an in-memory registry cannot be shared by several processes"
        )
    try:
        settings.timings  # noqa: B018 - validates the order of the deadlines
    except ValueError as exc:
        parser.error(
            f"{exc} (set by --heartbeat-interval / AEGIS_HEARTBEAT_INTERVAL, "
            "--unhealthy-after / AEGIS_UNHEALTHY_AFTER, --offline-after / AEGIS_OFFLINE_AFTER, "
            "--remove-after / AEGIS_REMOVE_AFTER)"
        )
    return settings
