"""aegis.router.rest.tokens: the tokens file, its errors, and looking a secret up."""

from __future__ import annotations

from pathlib import Path

import pytest
from aegis.router.rest.tokens import (
    Principal,
    Role,
    TokensFileError,
    digest,
    load_tokens,
    new_entry,
    parse_line,
    parse_tokens,
)


def test_a_new_entry_is_a_line_the_parser_reads_back() -> None:
    secret, entry = new_entry("ci-dashboard", Role.READ)

    assert secret.startswith("aegis_")
    assert len(secret) > 40
    assert secret not in entry.line()
    assert entry.line().startswith("ci-dashboard read sha256:")
    assert parse_line(entry.line()) == entry
    assert entry.digest == digest(secret)


def test_new_secrets_differ() -> None:
    assert new_entry("a", Role.READ)[0] != new_entry("a", Role.READ)[0]


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "é"])
def test_a_new_entry_needs_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        new_entry(name, Role.OPERATOR)


def test_comments_and_blank_lines_are_skipped() -> None:
    hex_digest = digest("s").hex()
    text = f"# who may do what\n\n  oncall   operator  sha256:{hex_digest}  # pager\n"

    [entry] = parse_tokens(text)

    assert (entry.name, entry.role) == ("oncall", Role.OPERATOR)


HEX = "ab" * 32


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("alice read", "expected 'NAME ROLE sha256:HEX', got 2 field(s)"),
        (f"alice read sha256:{HEX} extra", "got 4 field(s)"),
        (f"alice admin sha256:{HEX}", "role must be read or operator, got 'admin'"),
        (f"al/ice read sha256:{HEX}", "name 'al/ice' must match"),
        (f"alice read {HEX}", "must be 'sha256:' and 64 lowercase hex digits"),
        ("alice read sha256:abc", "64 lowercase hex digits"),
        (f"alice read sha256:{HEX.upper()}", "64 lowercase hex digits"),
    ],
)
def test_a_bad_line_is_named_with_what_is_wrong(line: str, says: str) -> None:
    text = f"# header\nbob operator sha256:{'cd' * 32}\n{line}\n"

    with pytest.raises(TokensFileError) as caught:
        parse_tokens(text, "/etc/aegis/tokens")

    assert str(caught.value).startswith("/etc/aegis/tokens, line 3: ")
    assert says in str(caught.value)


def test_a_pasted_secret_is_not_repeated_in_the_error() -> None:
    with pytest.raises(TokensFileError) as caught:
        parse_tokens("alice read aegis_PASTED-SECRET-VALUE\n")

    assert "PASTED-SECRET-VALUE" not in str(caught.value)


def test_names_and_secrets_are_each_used_once() -> None:
    line = f"alice read sha256:{HEX}"
    with pytest.raises(TokensFileError, match="line 2: name 'alice' is already on line 1"):
        parse_tokens(f"{line}\nalice operator sha256:{'cd' * 32}\n")
    with pytest.raises(TokensFileError, match="line 2: the same secret as line 1"):
        parse_tokens(f"{line}\nbob operator sha256:{HEX}\n")


def tokens_file(tmp_path: Path, *entries: tuple[str, Role, str]) -> Path:
    path = tmp_path / "tokens"
    path.write_text("".join(f"{n} {r.value} sha256:{digest(s).hex()}\n" for n, r, s in entries))
    return path


def test_the_table_finds_each_token_by_its_secret(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, ("ci", Role.READ, "s-read"), ("oncall", Role.OPERATOR, "s-op"))

    table = load_tokens(path, admin_token="s-admin")

    assert table is not None
    assert table.find("s-read") == Principal("ci", Role.READ)
    assert table.find("s-op") == Principal("oncall", Role.OPERATOR)
    assert table.find("s-admin") == Principal("admin", Role.OPERATOR)
    assert table.find("s-rea") is None
    assert table.find("") is None


def test_no_file_and_no_admin_token_is_no_table() -> None:
    assert load_tokens(None, None) is None
    assert load_tokens(None, "") is None


def test_the_admin_token_alone_is_the_operator_admin() -> None:
    table = load_tokens(None, "s-admin")

    assert table is not None
    assert [(e.name, e.role) for e in table.entries] == [("admin", Role.OPERATOR)]


def test_the_file_may_not_take_the_admin_token_s_name_or_secret(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="'admin' is AEGIS_ADMIN_TOKEN's"):
        load_tokens(tokens_file(tmp_path, ("admin", Role.READ, "x")), "s-admin")
    with pytest.raises(TokensFileError, match="'ops' has the same secret as AEGIS_ADMIN_TOKEN"):
        load_tokens(tokens_file(tmp_path, ("ops", Role.READ, "s-admin")), "s-admin")


def test_an_empty_or_missing_file_is_an_error_not_an_open_api(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    with pytest.raises(TokensFileError, match="holds no token"):
        load_tokens(empty, None)
    with pytest.raises(TokensFileError, match="cannot read tokens file"):
        load_tokens(tmp_path / "missing", None)
    table = load_tokens(empty, "s-admin")  # the admin token still works
    assert table is not None
    assert len(table) == 1


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.READ, Role.READ, True),
        (Role.READ, Role.OPERATOR, False),
        (Role.OPERATOR, Role.READ, True),
        (Role.OPERATOR, Role.OPERATOR, True),
    ],
)
def test_an_operator_may_also_read(role: Role, needed: Role, allowed: bool) -> None:
    assert role.allows(needed) is allowed
