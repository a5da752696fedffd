"""How aegis-router fails: each error said once, no secret shown, no noise.

Every failure path runs in both log formats: JSON through pipes (production)
and console on a real pseudo-terminal (a person trying it out).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import NatsServer, free_port, run_on_terminal

pytestmark = pytest.mark.e2e

PASSWORD = "pw-s3cret-" + secrets.token_hex(4)
TOKEN = "tok-s3cret-" + secrets.token_hex(4)
ADMIN_TOKEN = "adm-s3cret-" + secrets.token_hex(4)


@dataclass(frozen=True)
class Failure:
    """One way to make the router fail at start-up, and how it must say so."""

    event: str
    exit_code: int
    env: dict[str, str]
    said_once: str = ""  # the explanation, which must appear exactly once

    @property
    def explanation(self) -> str:
        return self.said_once or self.event


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server that wants another token than the router has."""
    server = NatsServer(
        data_dir=tmp_path_factory.mktemp("nats"), extra_args=["--auth", "the-right-token"]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    nkeys = pytest.importorskip("nkeys", reason="NKey seeds need nats-py[nkeys] (test extra)")
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    path = tmp_path_factory.mktemp("seed") / "user.nk"
    path.write_bytes(seed)
    return path, seed.decode()


def failure(name: str, tmp_path: Path, token_server: NatsServer, seed: tuple[Path, str]) -> Failure:
    nowhere = f"127.0.0.1:{free_port()}"
    if name == "unreachable":
        # A password and a token in the URL list.
        url = f"nats://alice:{PASSWORD}@{nowhere},nats://{TOKEN}@127.0.0.1:{free_port()}"
        return Failure("nats_unreachable", 1, {"AEGIS_NATS_URL": url})
    if name == "unreachable_two_workers":  # workers start in processes of their own
        url = f"nats://alice:{PASSWORD}@{nowhere}"
        return Failure("nats_unreachable", 1, {"AEGIS_NATS_URL": url, "AEGIS_HTTP_WORKERS": "2"})
    if name == "bad_tls_files":
        bad_ca = tmp_path / "ca.pem"
        bad_ca.write_text("not a certificate")
        return Failure(
            "nats_auth_invalid",
            1,
            {
                "AEGIS_NATS_URL": f"nats://{nowhere}",
                "AEGIS_NATS_USER": "alice",
                "AEGIS_NATS_PASSWORD": PASSWORD,
                "AEGIS_NATS_TLS_CA": str(bad_ca),
            },
        )
    if name == "bad_token":
        return Failure(
            "nats_auth_failed", 1, {"AEGIS_NATS_URL": token_server.url, "AEGIS_NATS_TOKEN": TOKEN}
        )
    if name == "nkey_seed_unreachable":
        return Failure(
            "nats_unreachable",
            1,
            {"AEGIS_NATS_URL": f"nats://{nowhere}", "AEGIS_NATS_NKEY_SEED": str(seed[0])},
        )
    assert name == "taken_port"
    return Failure(
        "embedded_nats_failed",
        2,
        {"AEGIS_NATS_USER": "alice", "AEGIS_NATS_PASSWORD": PASSWORD, "AEGIS_NATS_TOKEN": TOKEN},
        said_once="is already in use",
    )


def run_router(env: dict[str, str], on_terminal: bool) -> tuple[int, str]:
    command = [sys.executable, "-m", "aegis.router"]
    if on_terminal:
        return run_on_terminal(command, env)
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize(
    "path",
    [
        "unreachable",
        "unreachable_two_workers",
        "bad_tls_files",
        "bad_token",
        "nkey_seed_unreachable",
        "taken_port",
    ],
)
def test_start_up_failure_is_said_once_and_shows_no_secret(
    path: str,
    log_format: str,
    tmp_path: Path,
    token_server: NatsServer,
    seed_file: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AEGIS_NATS_URL", raising=False)
    case = failure(path, tmp_path, token_server, seed_file)
    data_dir = tmp_path / "data"
    nats_port = free_port()
    env = {
        **os.environ,
        "AEGIS_LOG_FORMAT": log_format,
        "AEGIS_HTTP_PORT": str(free_port()),
        "AEGIS_ADMIN_TOKEN": ADMIN_TOKEN,
        "AEGIS_DATA_DIR": str(data_dir),
        "AEGIS_EMBEDDED_NATS_PORT": str(nats_port),
        **case.env,
    }
    with socket.socket() as squatter:  # only the taken_port case starts the bundled server
        squatter.bind(("127.0.0.1", nats_port))
        squatter.listen()
        code, output = run_router(env, on_terminal=log_format == "console")

    assert code == case.exit_code, output
    assert case.event in output, output
    assert output.count(case.explanation) == 1, output
    assert "hint" in output, "every failure says what to do"
    written = [output] + [p.read_text(errors="replace") for p in data_dir.rglob("*.log")]
    for secret in (PASSWORD, TOKEN, ADMIN_TOKEN, seed_file[1]):
        assert not any(secret in text for text in written), f"a secret leaked:\n{output}"
    # No frames and no Sanic chatter for a failure that one event explains.
    for noise in ("Traceback", "Experienced exception", "Goin' Fast", "PRODUCTION mode"):
        assert noise not in output, output
