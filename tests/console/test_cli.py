"""``aegis-console`` options and environment."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from aegis.console import cli
from aegis.console.cli import Options, parse_options
from aegis.console.web_options import WebOptions


def test_defaults() -> None:
    assert parse_options([], {}) == Options("http://127.0.0.1:8000", 2.0, None)


def test_environment() -> None:
    env = {
        "AEGIS_API_URL": "https://registry.example:8443/",
        "AEGIS_CONSOLE_INTERVAL": "0.5",
        "AEGIS_ADMIN_TOKEN": "from-env",
    }
    assert parse_options([], env) == Options("https://registry.example:8443", 0.5, "from-env")


def test_flags_beat_environment() -> None:
    env = {"AEGIS_API_URL": "http://a:1", "AEGIS_CONSOLE_INTERVAL": "5", "AEGIS_ADMIN_TOKEN": "x"}
    argv = ["--api", "http://b:2", "--interval", "1", "--token", "y"]
    assert parse_options(argv, env) == Options("http://b:2", 1.0, "y")


def test_the_console_s_own_token_variable_wins_over_the_admin_token() -> None:
    env = {"AEGIS_CONSOLE_TOKEN": "read-token", "AEGIS_ADMIN_TOKEN": "admin-token"}
    assert parse_options([], env).token == "read-token"
    assert parse_options([], {"AEGIS_CONSOLE_TOKEN": "", "AEGIS_ADMIN_TOKEN": "a"}).token == "a"


def test_empty_token_variable_means_none() -> None:
    assert parse_options([], {"AEGIS_ADMIN_TOKEN": ""}).token is None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--interval", "0"], {}, "at least 0.2 seconds"),
        (["--interval", "nan"], {}, "at least 0.2 seconds"),
        (["--interval", "soon"], {}, "not a number of seconds"),
        ([], {"AEGIS_CONSOLE_INTERVAL": "-1"}, "at least 0.2 seconds"),
        (["--api", "127.0.0.1:8000"], {}, "must start with http:// or https://"),
        ([], {"AEGIS_API_URL": "ftp://x"}, "must start with http:// or https://"),
        (["--web", "--host", "0.0.0.0"], {}, "set AEGIS_CONSOLE_WEB_SECRET"),
        (["--web", "--host", "::"], {"AEGIS_CONSOLE_WEB_SECRET": ""}, "is not loopback"),
        (["--web"], {"AEGIS_CONSOLE_WEB_SECRET": "short"}, "at least 16 characters"),
        (["--web", "--port", "0"], {}, "must be 1 to 65535"),
        (["--web", "--port", "http"], {}, "not a port number"),
    ],
)
def test_bad_values_exit_2(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, env)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--api URL",
        "AEGIS_API_URL",
        "--interval SECONDS",
        "AEGIS_CONSOLE_INTERVAL",
        "--token TOKEN",
        "AEGIS_ADMIN_TOKEN",
        "Authorization: Bearer",
    ):
        assert expected in text


def test_main_runs_the_app_with_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, float, str | None]] = []

    class FakeApp:
        return_code = None

        def __init__(self, api_url: str, *, interval: float, token: str | None) -> None:
            started.append((api_url, interval, token))

        def run(self) -> None:
            pass

    monkeypatch.setattr("aegis.console.ui.ConsoleApp", FakeApp)
    monkeypatch.setenv("AEGIS_ADMIN_TOKEN", "tok")
    assert cli.main(["--api", "http://h:9", "--interval", "3"]) == 0
    assert started == [("http://h:9", 3.0, "tok")]


def test_web_listens_on_loopback_by_default() -> None:
    assert parse_options(["--web"], {}).web == WebOptions("127.0.0.1", 8080, None)


def test_web_elsewhere_takes_its_secret_from_the_environment() -> None:
    env = {"AEGIS_CONSOLE_WEB_SECRET": "s" * 16}
    web = parse_options(["--web", "--host", "0.0.0.0", "--port", "9000"], env).web
    assert web == WebOptions("0.0.0.0", 9000, "s" * 16)
    assert "s" * 16 not in repr(web)


def test_main_serves_the_web_console_with_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[WebOptions, Mapping[str, str]]] = []
    monkeypatch.setattr("aegis.console.web.serve", lambda web, env: served.append((web, dict(env))))
    monkeypatch.setenv("AEGIS_ADMIN_TOKEN", "tok")
    assert cli.main(["--web", "--port", "9001", "--api", "http://h:9", "--interval", "3"]) == 0
    assert served == [
        (
            WebOptions("127.0.0.1", 9001),
            {
                "AEGIS_API_URL": "http://h:9",
                "AEGIS_CONSOLE_INTERVAL": "3.0",
                "AEGIS_ADMIN_TOKEN": "tok",
            },
        )
    ]


def test_web_without_textual_serve_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "find_spec", lambda name: None)
    assert cli.main(["--web"]) == 2
    assert "pip install 'aegis-ipc[console]'" in capsys.readouterr().err
