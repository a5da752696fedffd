"""aegis.router.cli: the ``token`` command, and a bad tokens file refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog
from aegis.router import cli
from aegis.router.cli import main
from aegis.router.rest.tokens import Principal, Role, TokenTable, parse_tokens


def test_token_prints_a_secret_and_the_line_that_accepts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "ci-dashboard", "--role", "read"]) == 0

    out = capsys.readouterr().out.splitlines()
    secret = out[0].removeprefix("token:").strip()
    line = out[-1]
    assert line.startswith("ci-dashboard read sha256:")
    assert secret not in line
    assert TokenTable(parse_tokens(line)).find(secret) == Principal("ci-dashboard", Role.READ)


def test_token_defaults_to_read_and_refuses_a_bad_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "viewer"]) == 0
    assert " read sha256:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["token", "two words"])
    assert info.value.code == 2
    assert "must match" in capsys.readouterr().err


def test_a_bad_tokens_file_stops_the_router_at_start_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# ok\nalice reader sha256:00\n")

    code = main(["--tokens-file", str(path), "--log-format", "json", "--store", "memory"])

    assert code == 2
    err = capsys.readouterr()
    said = err.out + err.err
    assert "tokens_file_invalid" in said
    assert f"{path}, line 2: role must be read or operator" in said


def test_a_missing_tokens_file_says_so_and_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The router's logger caches its output on first use (cache_logger_on_first_use):
    # a fresh one writes to this test's captured stderr, not an earlier test's.
    monkeypatch.setattr(cli, "log", structlog.get_logger("aegis.router"))
    path = tmp_path / "no-such-tokens"

    code = main(["--tokens-file", str(path), "--log-format", "json", "--store", "memory"])

    assert code == 2
    err = capsys.readouterr()
    said = json.loads((err.out + err.err).strip().splitlines()[-1])
    assert said["event"] == "tokens_file_invalid"
    assert said["error"] == f"cannot read tokens file {path}: No such file or directory"
    assert "check AEGIS_TOKENS_FILE" in said["hint"], "not 'fix the line': there is none"
