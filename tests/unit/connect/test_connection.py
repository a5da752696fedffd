"""aegis.connect.connection: a connection that cannot work is refused at once, saying why."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from aegis.connect import connection as connection_module
from aegis.connect.connection import connect
from aegis.sdk import ClientConfig, NatsAuth, ServiceClient


async def test_connect_refuses_a_missing_file_at_once(tmp_path: Path) -> None:
    auth = NatsAuth(tls_ca=tmp_path / "missing-ca.pem")
    with pytest.raises(ValueError, match=r"missing-ca\.pem"):
        await connect(
            "nats://127.0.0.1:1",
            name="t",
            attempts=5,
            connect_timeout=0.1,
            backoff_base=5,
            backoff_max=5,
            auth=auth,
        )
    with pytest.raises(ValueError, match=r"missing-ca\.pem"):
        await ServiceClient("nats://127.0.0.1:1", ClientConfig(auth=auth)).connect()


async def test_nkeys_without_the_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def no_nkeys(name: str, *args: object) -> object:
        return None if name == "nkeys" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(connection_module.importlib.util, "find_spec", no_nkeys)
    seed = tmp_path / "user.nk"
    seed.write_text("x\n")
    auth = NatsAuth(nkey_seed=seed)
    with pytest.raises(ValueError, match=r"nats-py\[nkeys\]"):
        await connect(
            "nats://127.0.0.1:1",
            name="t",
            attempts=1,
            connect_timeout=0.1,
            backoff_base=0,
            backoff_max=0,
            auth=auth,
        )
