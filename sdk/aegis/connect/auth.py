"""How to prove who we are to NATS, and how to trust it: credentials and TLS.

One model, ``NatsAuth``, shared by the router and the SDK, turned into
nats-py ``connect()`` keyword arguments in one place (``connect_kwargs``).
Secrets are ``SecretStr``: they never show in a repr, a log line or an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# connect() arguments that carry a secret.
SECRET_OPTIONS = frozenset({"password", "token"})


class ConnectOptions(dict[str, Any]):
    """nats-py ``connect()`` keyword arguments whose repr hides the secrets among them.

    (A traceback that shows local variables must not print a password.)
    """

    def __repr__(self) -> str:
        shown = {k: "**********" if k in SECRET_OPTIONS else v for k, v in self.items()}
        return f"ConnectOptions({shown!r})"


class NatsAuth(BaseModel):
    """NATS credentials (at most one kind) and TLS settings; every field optional.

    - ``user`` + ``password``: a user in the server's ``authorization`` block.
    - ``token``: the server's ``authorization { token }`` (or ``--auth``).
    - ``nkey_seed``: a file holding an NKey seed (``SU...``); needs ``nkeys``
      installed (``pip install nats-py[nkeys]``).
    - ``creds``: a ``.creds`` file (user JWT + NKey seed, decentralised auth);
      needs ``nkeys`` too.
    - ``tls_ca``: CA bundle that verifies the server (default: the system's).
    - ``tls_cert`` + ``tls_key``: client certificate for mutual TLS.
    - ``tls_hostname``: name to check the server certificate against when
      it differs from the host in the URL.

    Setting any ``tls_*`` field makes the connection use TLS with those settings.
    """

    # hide_input_in_errors: a validation error must not echo a password back.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    user: str | None = Field(None, min_length=1)
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed: Path | None = None
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.user is None) != (self.password is None):
            raise ValueError("NATS user and password go together: set both or neither")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "a NATS TLS client certificate needs its private key (tls_cert with tls_key)"
            )
        kinds = [
            name
            for name, value in (
                ("user/password", self.user),
                ("token", self.token),
                ("nkey_seed", self.nkey_seed),
                ("creds", self.creds),
            )
            if value is not None
        ]
        if len(kinds) > 1:
            raise ValueError(f"choose one kind of NATS credentials, got {' and '.join(kinds)}")
        return self

    @property
    def uses_tls(self) -> bool:
        """True when any TLS setting is given."""
        return any(
            v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key, self.tls_hostname)
        )

    @property
    def needs_nkeys(self) -> bool:
        """True when signing in needs the ``nkeys`` package (NKey seed or .creds file)."""
        return self.nkey_seed is not None or self.creds is not None

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verifies the server (with ``tls_ca`` if given), mTLS cert.

        Raises ``ValueError`` naming the file that is missing or unreadable.
        """
        ca = None if self.tls_ca is None else _existing(self.tls_ca, "TLS CA (tls_ca)")
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the NATS TLS CA file {ca}: {exc}") from exc
        if self.tls_cert is not None and self.tls_key is not None:
            cert = _existing(self.tls_cert, "TLS client certificate (tls_cert)")
            key = _existing(self.tls_key, "TLS client key (tls_key)")
            try:
                context.load_cert_chain(cert, key, password=_no_passphrase)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"cannot load the NATS TLS client certificate {cert} with key {key} "
                    f"(they must match; encrypted keys are not supported): {exc}"
                ) from exc
        return context

    def connect_kwargs(self) -> ConnectOptions:
        """Keyword arguments for nats-py ``Client.connect`` (secrets revealed only here).

        Raises ``ValueError`` when a named file is missing or unusable.
        """
        kwargs = ConnectOptions()
        if self.user is not None and self.password is not None:
            kwargs["user"] = self.user
            kwargs["password"] = self.password.get_secret_value()
        if self.token is not None:
            kwargs["token"] = self.token.get_secret_value()
        if self.nkey_seed is not None:
            kwargs["nkeys_seed"] = str(_existing(self.nkey_seed, "NKey seed (nkey_seed)"))
        if self.creds is not None:
            kwargs["user_credentials"] = str(_existing(self.creds, "credentials (creds)"))
        if self.uses_tls:
            kwargs["tls"] = self.ssl_context()
            if self.tls_hostname is not None:
                kwargs["tls_hostname"] = self.tls_hostname
        return kwargs


def connect_kwargs(auth: NatsAuth | None) -> ConnectOptions:
    """``auth.connect_kwargs()``, or no arguments at all without auth."""
    return ConnectOptions() if auth is None else auth.connect_kwargs()


def redact_url(url: str) -> str:
    """``url`` with any password (or token) in it replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable NATS URL>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    userinfo = "***" if parts.password is None else f"{parts.username}:***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ValueError(f"NATS {what} file not found: {path}")
    return path


def _no_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise ValueError("the NATS TLS client key is encrypted; give an unencrypted key")
