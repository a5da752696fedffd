"""aegis.connect.auth: NatsAuth's validation, the connect() arguments it makes, hidden secrets."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aegis.connect.auth import ConnectOptions, connect_kwargs, redact_url
from aegis.sdk import ClientConfig, NatsAuth

from tests.support.pki import Pki

SECRET = "s3cret-Pa55word"


def a_file(tmp_path: Path, name: str, text: str = "x\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_auth_by_default() -> None:
    assert ClientConfig().auth is None
    assert connect_kwargs(None) == {}
    assert NatsAuth().connect_kwargs() == {}


def test_user_password() -> None:
    kwargs = NatsAuth(user="svc", password=SECRET).connect_kwargs()
    assert kwargs == {"user": "svc", "password": SECRET}


def test_token() -> None:
    assert NatsAuth(token=SECRET).connect_kwargs() == {"token": SECRET}


def test_nkey_seed_and_creds_files_become_their_paths(tmp_path: Path) -> None:
    seed = a_file(tmp_path, "user.nk")
    creds = a_file(tmp_path, "user.creds")
    assert NatsAuth(nkey_seed=seed).connect_kwargs() == {"nkeys_seed": str(seed)}
    assert NatsAuth(creds=creds).connect_kwargs() == {"user_credentials": str(creds)}
    assert NatsAuth(nkey_seed=seed).needs_nkeys
    assert not NatsAuth(token="t").needs_nkeys


@pytest.mark.parametrize(
    ("field", "what"),
    [
        ("nkey_seed", "NKey seed"),
        ("creds", "credentials"),
        ("tls_ca", "TLS CA"),
    ],
)
def test_a_missing_file_is_named(tmp_path: Path, field: str, what: str) -> None:
    missing = tmp_path / "nowhere" / "file.pem"
    auth = NatsAuth.model_validate({field: missing})
    with pytest.raises(ValueError, match=what) as caught:
        auth.connect_kwargs()
    assert str(missing) in str(caught.value)
    assert field in str(caught.value)


def test_a_missing_client_certificate_or_key_is_named(pki: Pki, tmp_path: Path) -> None:
    gone = tmp_path / "gone.pem"
    with pytest.raises(ValueError, match="client certificate"):
        NatsAuth(tls_ca=pki.ca, tls_cert=gone, tls_key=pki.client_key).connect_kwargs()
    with pytest.raises(ValueError, match="client key"):
        NatsAuth(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=gone).connect_kwargs()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user": "svc"}, "user and password go together"),
        ({"password": SECRET}, "user and password go together"),
        ({"tls_cert": "c.pem"}, "needs its private key"),
        ({"tls_key": "k.pem"}, "needs its private key"),
        ({"user": "svc", "password": SECRET, "token": SECRET}, "user/password and token"),
        ({"token": SECRET, "creds": "u.creds"}, "token and creds"),
        ({"nkey_seed": "u.nk", "creds": "u.creds"}, "nkey_seed and creds"),
        ({"usr": "svc"}, "Extra inputs"),
    ],
)
def test_settings_that_do_not_fit_are_refused_without_echoing_secrets(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        NatsAuth.model_validate(fields)
    assert SECRET not in str(caught.value)


def test_secrets_never_show_in_repr_str_or_dumps() -> None:
    auth = NatsAuth(user="svc", password=SECRET)
    config = ClientConfig(auth=NatsAuth(token=SECRET))
    kwargs = auth.connect_kwargs()
    shown = [
        repr(auth),
        str(auth),
        repr(config),
        auth.model_dump_json(),
        config.model_dump_json(),
        repr(kwargs),
        str(kwargs),
        repr(NatsAuth(token=SECRET).connect_kwargs()),
    ]
    for text in shown:
        assert SECRET not in text
    assert "svc" in repr(auth)
    assert isinstance(kwargs, ConnectOptions)
    assert kwargs["password"] == SECRET  # only the arguments themselves carry it


def test_tls_context_verifies_the_server_with_the_given_ca(pki: Pki) -> None:
    kwargs = NatsAuth(tls_ca=pki.ca).connect_kwargs()
    context = kwargs["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Aegis Test CA"),),)]
    assert "tls_hostname" not in kwargs


def test_tls_with_client_certificate_and_hostname(pki: Pki) -> None:
    auth = NatsAuth(
        tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key, tls_hostname="nats-1"
    )
    kwargs = auth.connect_kwargs()
    assert isinstance(kwargs["tls"], ssl.SSLContext)
    assert kwargs["tls_hostname"] == "nats-1"
    assert auth.uses_tls


def test_tls_without_a_ca_uses_the_system_trust_store(pki: Pki) -> None:
    kwargs = NatsAuth(tls_cert=pki.client_cert, tls_key=pki.client_key).connect_kwargs()
    assert kwargs["tls"].verify_mode is ssl.CERT_REQUIRED
    assert not NatsAuth(user="u", password="p").uses_tls


def test_a_certificate_with_the_wrong_key_is_refused(pki: Pki) -> None:
    auth = NatsAuth(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.server_key)
    with pytest.raises(ValueError, match="must match"):
        auth.connect_kwargs()


def test_an_unreadable_ca_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the NATS TLS CA"):
        NatsAuth(tls_ca=a_file(tmp_path, "ca.pem", "not a certificate")).connect_kwargs()


def test_an_encrypted_key_is_refused_rather_than_prompting(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    command = ["openssl", "pkey", "-in", str(pki.client_key), "-aes256", "-passout", "pass:pw"]
    subprocess.run(
        [*command, "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    auth = NatsAuth(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=encrypted)
    with pytest.raises(ValueError, match="encrypted"):
        auth.connect_kwargs()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (f"nats://svc:{SECRET}@nats-1:4222", "nats://svc:***@nats-1:4222"),
        (f"tls://{SECRET}@nats-1:4222", "tls://***@nats-1:4222"),
        (f"nats://u:{SECRET}@[::1]:4222", "nats://u:***@[::1]:4222"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
