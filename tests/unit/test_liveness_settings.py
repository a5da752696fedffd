"""The four liveness timings: environment variables, flags, defaults and refusals."""

from __future__ import annotations

import pytest
from aegis.router.domain import Timings
from aegis.router.settings import load_settings

VARS = {
    "heartbeat_interval": "AEGIS_HEARTBEAT_INTERVAL",
    "unhealthy_after": "AEGIS_UNHEALTHY_AFTER",
    "offline_after": "AEGIS_OFFLINE_AFTER",
    "remove_after": "AEGIS_REMOVE_AFTER",
}
FLAGS = {attr: "--" + attr.replace("_", "-") for attr in VARS}
# A valid, fractional set: every value parses as a float in (0, inf) and keeps the order.
FRACTIONAL = {
    "heartbeat_interval": 0.25,
    "unhealthy_after": 0.75,
    "offline_after": 1.5,
    "remove_after": 3.125,
}


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("aegis-router: error:")
    return line


def test_defaults() -> None:
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
    settings = load_settings([], env)
    assert settings.timings == Timings(**FRACTIONAL)
    assert all(isinstance(getattr(settings, attr), float) for attr in VARS)


def test_flags_parse_as_floats_and_beat_env() -> None:
    argv = [part for attr, value in FRACTIONAL.items() for part in (FLAGS[attr], str(value))]
    env = {var: "bogus" for var in VARS.values()}  # never read: the flags win
    assert load_settings(argv, env).timings == Timings(**FRACTIONAL)


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
