"""Who may use the admin API: named tokens, each with a role, kept hashed in a file.

The tokens file (``AEGIS_TOKENS_FILE``) holds one token a line::

    # name        role       hash of the secret
    ci-dashboard  read       sha256:5e8848...
    oncall        operator   sha256:9f86d0...

A secret is 32 random bytes (``new_secret``), so a fast hash is enough: nobody
can guess their way back from SHA-256 of 256 random bits, and the file can be
read by more people than the secrets. The old single ``AEGIS_ADMIN_TOKEN``
joins the table as the operator token named ``admin``. Logs and events name
the token, never its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

HASH_PREFIX: Final = "sha256:"
# Lets secret scanners (and people) tell what leaked.
SECRET_PREFIX: Final = "aegis_"  # noqa: S105 - a prefix, not a secret
ADMIN_NAME: Final = "admin"  # the name AEGIS_ADMIN_TOKEN goes by
ANONYMOUS: Final = "anonymous"  # who acts when no token is configured at all
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    """What a token may do: ``read`` the registry, or also act on it as an ``operator``."""

    READ = "read"
    OPERATOR = "operator"

    def allows(self, needed: Role) -> bool:
        """True if this role covers ``needed`` (an operator may also read)."""
        return self is Role.OPERATOR or needed is Role.READ


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a token's name and role (never its secret)."""

    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One line of the tokens file: a name, a role, and the SHA-256 of the secret."""

    name: str
    role: Role
    digest: bytes

    def line(self) -> str:
        """The entry as the tokens file spells it."""
        return f"{self.name} {self.role.value} {HASH_PREFIX}{self.digest.hex()}"


FIX_LINE = "fix the line, or make a new entry with 'aegis-router token NAME --role ROLE'"


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message names the file and line, ``hint``
    what to do."""

    def __init__(self, message: str, hint: str = FIX_LINE) -> None:
        super().__init__(message)
        self.hint = hint


def digest(secret: str) -> bytes:
    """SHA-256 of ``secret``: what the tokens file keeps of it."""
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    """A fresh secret: ``aegis_`` and 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_entry(name: str, role: Role) -> tuple[str, TokenEntry]:
    """A new secret and its tokens-file entry; ``ValueError`` if ``name`` is not allowed."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"token name {name!r} must match {NAME_PATTERN} (letters, digits, ._@-)")
    secret = new_secret()
    return secret, TokenEntry(name, role, digest(secret))


def parse_line(text: str) -> TokenEntry | None:
    """One line of the file: an entry, or None for a blank or ``#`` comment line.

    Raises ``ValueError`` saying what is wrong with it.
    """
    fields = text.split("#", 1)[0].split()
    if not fields:
        return None
    if len(fields) != 3:
        raise ValueError(f"expected 'NAME ROLE sha256:HEX', got {len(fields)} field(s)")
    name, role_text, hashed = fields
    if not _NAME.fullmatch(name):
        raise ValueError(f"name {name!r} must match {NAME_PATTERN}")
    try:
        role = Role(role_text)
    except ValueError:
        allowed = " or ".join(r.value for r in Role)
        raise ValueError(f"role must be {allowed}, got {role_text!r}") from None
    hex_digest = hashed.removeprefix(HASH_PREFIX)
    if not hashed.startswith(HASH_PREFIX) or not _DIGEST.fullmatch(hex_digest):
        # Said without the value: someone may have pasted the secret itself here.
        raise ValueError(
            "the third field must be 'sha256:' and 64 lowercase hex digits (the hash "
            "printed by 'aegis-router token', never the secret itself)"
        )
    return TokenEntry(name, role, bytes.fromhex(hex_digest))


def parse_tokens(text: str, source: str = "tokens file") -> list[TokenEntry]:
    """Every entry of a tokens file's ``text``; ``TokensFileError`` naming the line if bad."""
    entries: list[TokenEntry] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = parse_line(line)
        except ValueError as exc:
            raise TokensFileError(f"{source}, line {number}: {exc}") from None
        if entry is None:
            continue
        if entry.name in names:
            raise TokensFileError(
                f"{source}, line {number}: name {entry.name!r} is already on line "
                f"{names[entry.name]}"
            )
        if entry.digest in digests:
            raise TokensFileError(
                f"{source}, line {number}: the same secret as line {digests[entry.digest]}; "
                "give each token its own (aegis-router token NAME)"
            )
        names[entry.name], digests[entry.digest] = number, number
        entries.append(entry)
    return entries


class TokenTable:
    """The tokens a router accepts, looked up by the secret a request carries."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, secret: str) -> Principal | None:
        """The token whose secret is ``secret``, or None.

        Every entry is compared, each in constant time, so how long it takes does
        not tell which entry (if any) came close.
        """
        given = digest(secret)
        found: TokenEntry | None = None
        for entry in self.entries:
            if hmac.compare_digest(given, entry.digest):
                found = entry
        return None if found is None else Principal(found.name, found.role)


def load_tokens(path: Path | None, admin_token: str | None) -> TokenTable | None:
    """The table from ``path`` and ``admin_token`` (named ``admin``, an operator).

    None when neither is given: the admin API is then open (the settings allow
    that on loopback only, or with ``--insecure``). Raises ``TokensFileError``
    for a file that cannot be read or used.
    """
    entries: list[TokenEntry] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TokensFileError(
                f"cannot read tokens file {path}: {why}",
                hint="check AEGIS_TOKENS_FILE (or --tokens-file) and that the router may "
                "read it; 'aegis-router token NAME --role ROLE' prints a line to put in it",
            ) from None
        entries = parse_tokens(text, str(path))
        if not entries and admin_token is None:
            # An empty file would otherwise lock everyone out (or, worse, be taken for "no auth").
            raise TokensFileError(f"{path} holds no token; add one with 'aegis-router token NAME'")
    if admin_token:
        admin = TokenEntry(ADMIN_NAME, Role.OPERATOR, digest(admin_token))
        for entry in entries:
            if entry.name == ADMIN_NAME:
                raise TokensFileError(
                    f"{path}: the name {ADMIN_NAME!r} is AEGIS_ADMIN_TOKEN's; "
                    "rename the file's token or unset AEGIS_ADMIN_TOKEN"
                )
            if entry.digest == admin.digest:
                raise TokensFileError(
                    f"{path}: token {entry.name!r} has the same secret as AEGIS_ADMIN_TOKEN"
                )
        entries.append(admin)
    return TokenTable(entries) if entries else None
