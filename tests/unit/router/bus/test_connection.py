"""aegis.router.bus.connection: the router's NATS sign-in settings become one NatsAuth."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlparse

import pytest
from aegis.router.bus.connection import connected_server, nats_auth
from aegis.router.settings import Settings, load_settings

from tests.support.pki import Pki

SECRET = "s3cret-Pa55word"


def test_router_without_nats_auth_settings_connects_anonymously() -> None:
    assert nats_auth(Settings()) is None


def test_router_settings_become_nats_auth(tmp_path: Path, pki: Pki) -> None:
    env = {
        "AEGIS_NATS_USER": "router",
        "AEGIS_NATS_PASSWORD": SECRET,
        "AEGIS_NATS_TLS_CA": str(pki.ca),
        "AEGIS_NATS_TLS_CERT": str(pki.client_cert),
        "AEGIS_NATS_TLS_KEY": str(pki.client_key),
    }
    auth = nats_auth(load_settings([], env))

    assert auth is not None
    assert (auth.user, auth.tls_ca, auth.tls_cert, auth.tls_key) == (
        "router",
        pki.ca,
        pki.client_cert,
        pki.client_key,
    )
    assert auth.password is not None
    assert auth.password.get_secret_value() == SECRET
    assert SECRET not in repr(auth)


def test_router_token_nkey_and_creds_settings(tmp_path: Path) -> None:
    seed, creds = tmp_path / "r.nk", tmp_path / "r.creds"
    seed.write_text("x\n")
    creds.write_text("x\n")
    token = nats_auth(load_settings(["--nats-token", SECRET], {}))
    by_seed = nats_auth(load_settings([], {"AEGIS_NATS_NKEY_SEED": str(seed)}))
    by_creds = nats_auth(load_settings(["--nats-creds", str(creds)], {}))

    assert token is not None
    assert token.connect_kwargs() == {"token": SECRET}
    assert by_seed is not None
    assert by_seed.connect_kwargs() == {"nkeys_seed": str(seed)}
    assert by_creds is not None
    assert by_creds.connect_kwargs() == {"user_credentials": str(creds)}


def test_router_settings_that_do_not_fit_name_the_problem_not_the_secret() -> None:
    with pytest.raises(ValueError, match="user and password go together") as caught:
        nats_auth(Settings(nats_password=SECRET))
    assert SECRET not in str(caught.value)
    assert "validation error" not in str(caught.value)  # pydantic's wrapping is gone


def test_the_connected_server_is_shown_as_host_and_port_without_credentials() -> None:
    def on(url: str | None) -> Any:
        return cast(Any, SimpleNamespace(connected_url=None if url is None else urlparse(url)))

    assert connected_server(on(f"nats://router:{SECRET}@10.0.0.7:4222")) == "10.0.0.7:4222"
    assert connected_server(on(f"tls://{SECRET}@nats.example:4443")) == "nats.example:4443"
    assert connected_server(on("nats://127.0.0.1:4223")) == "127.0.0.1:4223"
    assert connected_server(on(None)) is None  # not connected at this moment
