"""Router settings: defaults, environment variables, flags, and bad values."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from aegis.router.settings import Settings, default_data_dir, load_settings, options


class Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


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
    # The usage text lists every flag anyway; the error line itself must say what was wrong.
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert error_line.startswith("aegis-router: error:")
    assert named in error_line


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


def test_readme_table_lists_every_setting_with_its_default() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `AEGIS_")]
    for option in options():
        (row,) = [r for r in rows if f"`{option.env}`" in r.split("|")[1]]
        assert f"`{option.flag}`" in row.split("|")[2], option.flag
        if option.shown_default and option.default is not None:
            default = option.default
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"`{shown}`" in row.split("|")[3], (option.env, row)
