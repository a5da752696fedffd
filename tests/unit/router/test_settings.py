"""aegis.router.settings: defaults, environment variables, flags, and refusals.

Every setting's sources and bad values, the four liveness timings, and the rule
that an admin API off loopback needs a token (or --insecure).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from aegis.router.domain import Timings
from aegis.router.settings import Settings, default_data_dir, is_loopback, load_settings

# -- sources, defaults, refusals ------------------------------------------------------


class Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a refused command line (then its hint, and nothing else)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, "one line and a hint; the usage only with --help"
    line, hint = lines
    assert line.startswith("aegis-router: error:")
    assert hint.strip().startswith("hint: aegis-router --help")
    # No internal names ("invalid _seconds value") nor Python's own conversion messages.
    assert not re.search(r"(?<!\w)_[a-z]", line), line
    assert "could not convert" not in line, line
    assert "invalid literal" not in line, line
    return line


@pytest.mark.parametrize(("tty", "fmt"), [(False, "json"), (True, "console")])
def test_defaults(monkeypatch: pytest.MonkeyPatch, tty: bool, fmt: str) -> None:
    monkeypatch.setattr("sys.stderr", Stderr(tty))
    settings = load_settings([], {"XDG_DATA_HOME": "/xdg"})
    assert settings == Settings(data_dir=Path("/xdg/aegis"), log_format=fmt)  # type: ignore[arg-type]
    assert settings.nats_url is None
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("AEGIS_NATS_URL", "nats://a:1,nats://b:2", "nats_url", "nats://a:1,nats://b:2"),
        ("AEGIS_HTTP_HOST", "127.0.0.2", "http_host", "127.0.0.2"),
        ("AEGIS_HTTP_PORT", "9001", "http_port", 9001),
        ("AEGIS_EMBEDDED_NATS_HOST", "::1", "embedded_nats_host", "::1"),
        ("AEGIS_EMBEDDED_NATS_PORT", "4333", "embedded_nats_port", 4333),
        ("AEGIS_DATA_DIR", "/srv/aegis", "data_dir", Path("/srv/aegis")),
        ("AEGIS_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("AEGIS_LOG_FORMAT", "console", "log_format", "console"),
        ("AEGIS_LOG_FORMAT", "json", "log_format", "json"),
        ("AEGIS_MAX_IN_FLIGHT", "8", "max_in_flight", 8),
        ("AEGIS_MAX_REQUEST_BYTES", "1000", "max_request_bytes", 1000),
        ("AEGIS_MAX_METADATA_BYTES", "500", "max_metadata_bytes", 500),
    ],
)
def test_env_var_maps_to_setting(var: str, value: str, attr: str, expected: object) -> None:
    assert getattr(load_settings([], {var: value}), attr) == expected


def test_empty_env_var_means_unset() -> None:
    assert load_settings([], {"AEGIS_HTTP_PORT": "", "AEGIS_NATS_URL": ""}).http_port == 8000


@pytest.mark.parametrize(
    ("flag", "var", "attr", "expected"),
    [
        (["--http-port", "7000"], {"AEGIS_HTTP_PORT": "9000"}, "http_port", 7000),
        (
            ["--nats-url", "nats://flag:1"],
            {"AEGIS_NATS_URL": "nats://env:1"},
            "nats_url",
            "nats://flag:1",
        ),
        (["--log-level", "warning"], {"AEGIS_LOG_LEVEL": "ERROR"}, "log_level", "WARNING"),
        # A good flag wins even over a bad variable, which is then never read.
        (["--http-port", "7000"], {"AEGIS_HTTP_PORT": "nonsense"}, "http_port", 7000),
    ],
)
def test_flag_beats_env(flag: list[str], var: dict[str, str], attr: str, expected: object) -> None:
    assert getattr(load_settings(flag, var), attr) == expected


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {"AEGIS_HTTP_PORT": "http"}, "AEGIS_HTTP_PORT"),
        ([], {"AEGIS_HTTP_PORT": "70000"}, "AEGIS_HTTP_PORT"),
        ([], {"AEGIS_EMBEDDED_NATS_PORT": "0"}, "AEGIS_EMBEDDED_NATS_PORT"),
        ([], {"AEGIS_MAX_IN_FLIGHT": "-1"}, "AEGIS_MAX_IN_FLIGHT"),
        (["--http-port", "-5"], {}, "--http-port"),
        (["--http-port", "x"], {}, "--http-port"),
        (["--max-in-flight", "x"], {}, "--max-in-flight"),
        ([], {"AEGIS_MAX_IN_FLIGHT": "1.5"}, "AEGIS_MAX_IN_FLIGHT"),
        ([], {"AEGIS_LOG_LEVEL": "verbose"}, "AEGIS_LOG_LEVEL"),
        (["--log-level", "verbose"], {}, "--log-level"),
        ([], {"AEGIS_LOG_FORMAT": "xml"}, "AEGIS_LOG_FORMAT"),
        (["--log-format", "xml"], {}, "--log-format"),
    ],
)
def test_bad_value_exits_naming_its_source(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(argv, env)
    assert info.value.code == 2
    line = error_line(capsys)
    assert named in line
    assert "_port" not in line, "no internal names"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_DATA_HOME": "/data"}, Path("/data/aegis")),
        ({"XDG_DATA_HOME": ""}, Path.home() / ".local/share/aegis"),
        ({}, Path.home() / ".local/share/aegis"),
    ],
)
def test_default_data_dir(env: dict[str, str], expected: Path) -> None:
    assert default_data_dir(env) == expected
    assert load_settings([], env).data_dir == expected


def test_data_dir_env_beats_xdg() -> None:
    settings = load_settings([], {"XDG_DATA_HOME": "/data", "AEGIS_DATA_DIR": "/own"})
    assert settings.data_dir == Path("/own")


# -- the four liveness timings -------------------------------------------------------

VARS = {
    "heartbeat_interval": "AEGIS_HEARTBEAT_INTERVAL",
    "unhealthy_after": "AEGIS_UNHEALTHY_AFTER",
    "offline_after": "AEGIS_OFFLINE_AFTER",
    "remove_after": "AEGIS_REMOVE_AFTER",
}
FLAGS = {attr: "--" + attr.replace("_", "-") for attr in VARS}
# A valid, fractional set: every value parses as a float in (0, inf) and keeps the order.
# (Too short for shared leases: loaded with the memory store.)
FRACTIONAL = {
    "heartbeat_interval": 0.25,
    "unhealthy_after": 0.75,
    "offline_after": 1.5,
    "remove_after": 3.125,
}


def test_timing_defaults() -> None:
    settings = load_settings([], {})
    assert settings.timings == Timings(5.0, 15.0, 30.0, 300.0)
    assert (
        settings.heartbeat_interval,
        settings.unhealthy_after,
        settings.offline_after,
        settings.remove_after,
    ) == (5.0, 15.0, 30.0, 300.0)


def test_env_vars_parse_as_floats() -> None:
    env = {VARS[attr]: str(value) for attr, value in FRACTIONAL.items()}
    settings = load_settings([], {**env, "AEGIS_STORE": "memory"})
    assert settings.timings == Timings(**FRACTIONAL)
    assert all(isinstance(getattr(settings, attr), float) for attr in VARS)


def test_flags_parse_as_floats_and_beat_env() -> None:
    argv = [part for attr, value in FRACTIONAL.items() for part in (FLAGS[attr], str(value))]
    env = {var: "bogus" for var in VARS.values()}  # never read: the flags win
    assert load_settings([*argv, "--store", "memory"], env).timings == Timings(**FRACTIONAL)


@pytest.mark.parametrize(("attr", "value"), [("unhealthy_after", "12.5"), ("remove_after", "1e3")])
def test_one_var_alone_keeps_the_other_defaults(attr: str, value: str) -> None:
    timings = load_settings([], {VARS[attr]: value}).timings
    assert getattr(timings, attr) == float(value)
    for other in VARS:
        if other != attr:
            assert getattr(timings, other) == getattr(Timings(), other)


@pytest.mark.parametrize("attr", VARS)
@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "abc", "nan", "inf", "5s"])
@pytest.mark.parametrize("via", ["env", "flag"])
def test_bad_number_exits_naming_its_source(
    attr: str, value: str, via: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, env = ([f"{FLAGS[attr]}={value}"], {}) if via == "flag" else ([], {VARS[attr]: value})
    with pytest.raises(SystemExit) as info:
        load_settings(argv, env)
    assert info.value.code == 2
    assert (FLAGS if via == "flag" else VARS)[attr] in error_line(capsys)


@pytest.mark.parametrize(
    "env",
    [
        {"AEGIS_HEARTBEAT_INTERVAL": "15"},  # == unhealthy_after
        {"AEGIS_HEARTBEAT_INTERVAL": "20"},
        {"AEGIS_UNHEALTHY_AFTER": "30"},  # == offline_after
        {"AEGIS_UNHEALTHY_AFTER": "45.5"},
        {"AEGIS_OFFLINE_AFTER": "10"},
        {"AEGIS_OFFLINE_AFTER": "300"},  # == remove_after
        {"AEGIS_REMOVE_AFTER": "29.5"},
        {"AEGIS_UNHEALTHY_AFTER": "60", "AEGIS_OFFLINE_AFTER": "40", "AEGIS_REMOVE_AFTER": "50"},
    ],
)
def test_out_of_order_timings_refuse_to_start(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings([], env)
    assert info.value.code == 2
    line = error_line(capsys)
    for var in VARS.values():
        assert var in line
    for value in env.values():
        assert value in line  # the offending values are shown


def test_out_of_order_flags_refuse_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(["--offline-after", "10"], {})
    assert info.value.code == 2
    assert "AEGIS_OFFLINE_AFTER" in error_line(capsys)


# What shared leases honour: unhealthy_after above MEMBER_TTL (3 s) + heartbeat_interval.


@pytest.mark.parametrize(
    ("heartbeat", "unhealthy", "bound"),
    [
        ("0.2", "1", "3.2"),  # the quick timings e2e tests once ran on the jetstream store
        ("0.5", "3.5", "3.5"),  # on the bound: not above it
        ("5", "8", "8"),
        ("10", "12", "13"),
    ],
)
@pytest.mark.parametrize("store", [[], ["--store", "jetstream"]])
def test_unhealthy_after_shared_leases_cannot_honour_refuses_to_start(
    heartbeat: str,
    unhealthy: str,
    bound: str,
    store: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "AEGIS_HEARTBEAT_INTERVAL": heartbeat,
        "AEGIS_UNHEALTHY_AFTER": unhealthy,
        "AEGIS_OFFLINE_AFTER": "60",
    }
    with pytest.raises(SystemExit) as info:
        load_settings(store, env)
    assert info.value.code == 2
    line = error_line(capsys)
    assert f"AEGIS_UNHEALTHY_AFTER is {unhealthy} s" in line
    assert f"must be above {bound} s" in line  # the bound, worked out for these settings
    assert f"AEGIS_HEARTBEAT_INTERVAL ({heartbeat} s)" in line
    assert "--store memory" in line  # and the way out for a single router


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {"AEGIS_HEARTBEAT_INTERVAL": "0.5", "AEGIS_UNHEALTHY_AFTER": "4"}),  # chaos runs
        ([], {"AEGIS_HEARTBEAT_INTERVAL": "5", "AEGIS_UNHEALTHY_AFTER": "8.5"}),
        (["--store", "memory"], {"AEGIS_UNHEALTHY_AFTER": "1", "AEGIS_HEARTBEAT_INTERVAL": "0.2"}),
    ],
)
def test_timings_above_the_lease_bound_or_without_shared_leases_start(
    argv: list[str], env: dict[str, str]
) -> None:
    settings = load_settings(argv, env)
    assert settings.unhealthy_after == float(env["AEGIS_UNHEALTHY_AFTER"])


# -- the admin API off loopback -------------------------------------------------------

TOKEN = "s3cret-token-value"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_address_without_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings([], {"AEGIS_HTTP_HOST": "0.0.0.0"})

    assert info.value.code == 2
    assert "AEGIS_ADMIN_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {"AEGIS_HTTP_HOST": "0.0.0.0", "AEGIS_ADMIN_TOKEN": TOKEN}),
        (["--insecure"], {"AEGIS_HTTP_HOST": "0.0.0.0"}),
        ([], {"AEGIS_HTTP_HOST": "0.0.0.0", "AEGIS_INSECURE": "1"}),
        ([], {"AEGIS_HTTP_HOST": "0.0.0.0", "AEGIS_TOKENS_FILE": "/etc/aegis/tokens"}),
        (["--tokens-file", "tokens"], {"AEGIS_HTTP_HOST": "0.0.0.0"}),
    ],
)
def test_public_address_with_token_or_insecure_is_accepted(
    argv: list[str], env: dict[str, str]
) -> None:
    settings = load_settings(argv, env)

    assert settings.http_host == "0.0.0.0"
    assert TOKEN not in repr(settings), "the token must not leak into logs of the settings"
