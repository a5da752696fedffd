"""NATS authentication and TLS against a real nats-server, and the permissions example.

Certificates come from the session's ``pki`` fixture (tests/support/pki.py).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
from aegis.connect.auth import connect_kwargs
from aegis.sdk import ClientConfig, NatsAuth, ServiceClient, ServiceUnavailableError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.pki import Pki
from tests.support.procs import NatsServer, nats_cluster, router_process

REPO = Path(__file__).resolve().parents[2]
PERMISSIONS_CONF = REPO / "deploy" / "nats-permissions.conf"
QUEUE = "aegis-router"  # the routers' queue group (aegis.router.bus.responder)

# One attempt, short waits: a refused client must fail within a second or two.
QUICK = {"timeout": 2.0, "retries": 1, "connect_timeout": 1.0, "backoff_base": 0.01}


# -- servers and helpers ---------------------------------------------------------------

StartNats = Callable[..., NatsServer]


@pytest.fixture
def start_nats(tmp_path: Path) -> Iterator[StartNats]:
    """Start a nats-server with extra command-line arguments; all stopped after the test."""
    started: list[NatsServer] = []

    def start(*args: str | Path) -> NatsServer:
        server = NatsServer(
            data_dir=tmp_path / f"nats-{len(started)}", extra_args=[str(a) for a in args]
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def responder(
    url: str, auth: NatsAuth | None, subject: str = "ipc.svc.billing.discover"
) -> NatsClient:
    """A stand-in router answering every ``subject`` request: no instances."""
    nc = NatsClient()
    await nc.connect(url, connect_timeout=2, allow_reconnect=False, **connect_kwargs(auth))

    async def answer(msg: Msg) -> None:
        await msg.respond(msgpack.packb({"ok": True, "status": 200, "instances": []}))

    await nc.subscribe(subject, queue=QUEUE, cb=answer)
    await nc.flush()
    return nc


async def discover_through(url: str, auth: NatsAuth | None) -> list[object]:
    """One request-reply through the SDK with ``auth``."""
    async with ServiceClient(url, ClientConfig(auth=auth, **QUICK)) as client:
        return list(await client.discover("billing"))


async def refused(url: str, auth: NatsAuth | None) -> ServiceUnavailableError:
    """The SDK's error when it cannot connect with ``auth``; it must come quickly."""
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as caught:
        await ServiceClient(url, ClientConfig(auth=auth, **QUICK)).connect()
    assert time.monotonic() - started < 5
    assert caught.value.status_code == 503
    return caught.value


# -- user/password and token -----------------------------------------------------------


async def test_user_password_auth_connects_and_request_reply_works(
    start_nats: StartNats,
) -> None:
    server = start_nats("--user", "svc", "--pass", "right-pw")
    auth = NatsAuth(user="svc", password="right-pw")
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
    finally:
        await nc.close()


async def test_wrong_password_or_none_is_503_quickly(start_nats: StartNats) -> None:
    server = start_nats("--user", "svc", "--pass", "right-pw")

    wrong = await refused(server.url, NatsAuth(user="svc", password="wrong-pw"))
    anonymous = await refused(server.url, None)

    assert wrong.code == anonymous.code == "NATS_AUTH_FAILED"
    assert "wrong-pw" not in str(wrong)
    assert "Authorization Violation" in str(wrong)


async def test_token_auth(start_nats: StartNats) -> None:
    server = start_nats("--auth", "the-token")
    auth = NatsAuth(token="the-token")
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
    finally:
        await nc.close()

    error = await refused(server.url, NatsAuth(token="not-the-token"))
    assert error.code == "NATS_AUTH_FAILED"
    assert "not-the-token" not in str(error)


# -- TLS -------------------------------------------------------------------------------


def tls_args(pki: Pki, *, mutual: bool = False) -> list[str | Path]:
    args: list[str | Path] = ["--tls", "--tlscert", pki.server_cert, "--tlskey", pki.server_key]
    if mutual:
        args += ["--tlsverify", "--tlscacert", pki.ca]
    return args


async def test_tls_with_the_ca_connects(start_nats: StartNats, pki: Pki) -> None:
    server = start_nats(*tls_args(pki))
    auth = NatsAuth(tls_ca=pki.ca)
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
        # The server certificate names localhost too; tls_hostname checks that name.
        named = NatsAuth(tls_ca=pki.ca, tls_hostname="localhost")
        assert await discover_through(server.url, named) == []
    finally:
        await nc.close()


async def test_tls_without_the_ca_or_with_a_wrong_name_fails(
    start_nats: StartNats, pki: Pki
) -> None:
    server = start_nats(*tls_args(pki))

    untrusted = await refused(server.url, None)  # the system CAs do not know ours
    wrong_name = await refused(server.url, NatsAuth(tls_ca=pki.ca, tls_hostname="nats.example"))

    assert untrusted.code == wrong_name.code == "NATS_AUTH_FAILED"
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted)


async def test_mutual_tls_needs_the_client_certificate(start_nats: StartNats, pki: Pki) -> None:
    server = start_nats(*tls_args(pki, mutual=True))
    auth = NatsAuth(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
    finally:
        await nc.close()

    # The server's TLS alert may come after it closed the socket (a broken pipe):
    # either way, no connection.
    without_cert = await refused(server.url, NatsAuth(tls_ca=pki.ca))
    assert without_cert.code in ("NATS_AUTH_FAILED", "NATS_UNREACHABLE")


async def test_tls_and_password_together(start_nats: StartNats, pki: Pki) -> None:
    server = start_nats(*tls_args(pki), "--user", "svc", "--pass", "right-pw")
    auth = NatsAuth(user="svc", password="right-pw", tls_ca=pki.ca)
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
    finally:
        await nc.close()


# -- NKey ------------------------------------------------------------------------------


async def test_nkey_seed_auth(start_nats: StartNats, tmp_path: Path) -> None:
    nkeys = pytest.importorskip("nkeys", reason="NKey sign-in needs nats-py[nkeys]")
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    conf = tmp_path / "nkey.conf"
    conf.write_text(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n')
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    server = start_nats("-c", conf)

    auth = NatsAuth(nkey_seed=seed_file)
    nc = await responder(server.url, auth)
    try:
        assert await discover_through(server.url, auth) == []
    finally:
        await nc.close()

    other = tmp_path / "other.nk"
    other.write_bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))
    assert (await refused(server.url, NatsAuth(nkey_seed=other))).code == "NATS_AUTH_FAILED"


# -- the router itself -----------------------------------------------------------------


@pytest.mark.e2e
async def test_router_signs_in_with_user_password_and_registers(
    start_nats: StartNats, tmp_path: Path
) -> None:
    password = "router-" + secrets.token_hex(8)
    server = start_nats("--user", "aegis", "--pass", password)
    router = router_process(
        tmp_path,
        nats_url=server.url,
        AEGIS_NATS_USER="aegis",
        AEGIS_NATS_PASSWORD=password,
        AEGIS_LOG_LEVEL="DEBUG",
    )
    async with router:
        config = ClientConfig(auth=NatsAuth(user="aegis", password=password), **QUICK)
        async with ServiceClient(server.url, config) as client:
            instance = await client.register("billing", "billing-1", {"v": 1})
            listed = await router.get("/api/v1/admin/services/billing")

    assert instance.instance_id == "billing-1"
    assert [i["instance_id"] for i in listed.json()["instances"]] == ["billing-1"]
    assert password not in router.logs()


@pytest.mark.e2e
def test_router_with_a_wrong_password_exits_saying_why(
    start_nats: StartNats, tmp_path: Path
) -> None:
    server = start_nats("--user", "aegis", "--pass", "right-pw")
    router = router_process(
        tmp_path,
        nats_url=server.url,
        AEGIS_NATS_USER="aegis",
        AEGIS_NATS_PASSWORD="wrong-pw-123",
    )
    code = router.run()

    logs = router.logs()
    assert code != 0
    assert "nats_auth_failed" in logs
    assert "AEGIS_NATS_PASSWORD" in logs
    assert "wrong-pw-123" not in logs


# -- deploy/nats-permissions.conf ------------------------------------------------------

ROUTER_PW = "router-pw-" + secrets.token_hex(4)
SERVICE_PW = "payments-pw-" + secrets.token_hex(4)
ROUTER = NatsAuth(user="router", password=ROUTER_PW)
# A team's user: it speaks for billing and invoices only (tests/e2e/test_service_rights.py
# shows what each user of the file can and cannot do against a real router).
SERVICE = NatsAuth(user="payments", password=SERVICE_PW)
OWN_REGISTER = "ipc.svc.billing.register"


@pytest.fixture
def permissions_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The passwords deploy/nats-permissions.conf reads from nats-server's environment."""
    monkeypatch.setenv("NATS_ROUTER_PASSWORD", ROUTER_PW)
    monkeypatch.setenv("NATS_PAYMENTS_PASSWORD", SERVICE_PW)
    monkeypatch.setenv("NATS_SHOP_PASSWORD", "shop-pw")
    monkeypatch.setenv("NATS_READER_PASSWORD", "reader-pw")


@dataclass
class Watcher:
    """A connection that records what it receives and the errors NATS reports to it."""

    nc: NatsClient
    errors: list[Exception]
    received: list[Msg]

    @classmethod
    async def connect(cls, url: str, auth: NatsAuth) -> Watcher:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        nc = NatsClient()
        await nc.connect(url, allow_reconnect=False, error_cb=on_error, **connect_kwargs(auth))
        return cls(nc, errors, [])

    async def subscribe(self, subject: str, queue: str = "") -> None:
        async def record(msg: Msg) -> None:
            self.received.append(msg)

        await self.nc.subscribe(subject, queue=queue, cb=record)
        await self.nc.flush()

    def violations(self) -> list[str]:
        return [str(e) for e in self.errors if "permissions violation" in str(e).lower()]


async def test_permissions_service_requests_reach_the_router_but_cannot_be_read(
    start_nats: StartNats, permissions_env: None
) -> None:
    server = start_nats("-c", PERMISSIONS_CONF)
    router = await responder(server.url, ROUTER, OWN_REGISTER)
    snoop = await Watcher.connect(server.url, SERVICE)
    service = await Watcher.connect(server.url, SERVICE)
    replies: list[Msg] = []

    async def seen(msg: Msg) -> None:
        replies.append(msg)

    try:
        # A service tries to read (or answer) registrations: the server refuses.
        await snoop.subscribe(OWN_REGISTER)
        await snoop.subscribe("ipc.svc.>", queue=QUEUE)
        await eventually(lambda: len(snoop.violations()) == 2, "both refused", within=5)
        # It may read replies (they carry no session id): they are the sentinel. The
        # server hands a request to every subscriber as it routes it, before the router
        # has it to answer, so a request let through to the snoop would come before
        # the reply to it on the snoop's connection.
        await snoop.nc.subscribe("_INBOX.>", cb=seen)
        await snoop.nc.flush()

        for _ in range(3):
            reply = await service.nc.request(OWN_REGISTER, msgpack.packb({}), timeout=2)
            assert msgpack.unpackb(reply.data)["ok"] is True
        await eventually(lambda: len(replies) == 3, "the snoop seeing the 3 replies", within=5)
    finally:
        await router.close()
        for conn in (snoop, service):
            await conn.nc.close()

    assert snoop.received == []
    assert all("ipc.svc" in v for v in snoop.violations())


async def test_permissions_only_the_router_publishes_events_and_only_in_its_queue(
    start_nats: StartNats, permissions_env: None
) -> None:
    server = start_nats("-c", PERMISSIONS_CONF)
    watcher = await Watcher.connect(server.url, SERVICE)
    forger = await Watcher.connect(server.url, SERVICE)
    router = await Watcher.connect(server.url, ROUTER)
    try:
        await watcher.subscribe("ipc.events.service.>")  # watching is allowed
        await forger.nc.publish("ipc.events.service.billing", b"forged")
        await forger.nc.flush()
        await router.nc.publish("ipc.events.service.billing", b"real")
        await router.nc.flush()
        await eventually(
            lambda: len(watcher.received) == 1 and len(forger.violations()) == 1,
            "the real event in, the forged one refused",
            within=5,
        )
        # A router subscribes to requests in the routers' queue group, not outside it.
        await router.subscribe("ipc.service.register")
        await eventually(lambda: len(router.violations()) == 1, "refused", within=5)
    finally:
        for conn in (watcher, forger, router):
            await conn.nc.close()

    assert [m.data for m in watcher.received] == [b"real"]
    assert watcher.violations() == []


async def test_permissions_hold_in_a_cluster_started_with_the_compose_flags(
    tmp_path: Path, permissions_env: None
) -> None:
    nodes = nats_cluster(tmp_path / "cluster")
    for node in nodes:
        node.extra_args += ["-c", str(PERMISSIONS_CONF)]
        node.start()
    try:
        router = await responder(nodes[2].url, ROUTER, OWN_REGISTER)
        service = await Watcher.connect(nodes[0].url, SERVICE)
        replies: list[Msg] = []

        async def answered() -> bool:
            try:
                replies.append(await service.nc.request(OWN_REGISTER, b"\x80", timeout=1))
            except Exception:  # until the cluster has formed and carries the router's interest
                return False
            return True

        try:
            await eventually(answered, "a reply through the cluster", within=15)
        finally:
            await router.close()
            await service.nc.close()
    finally:
        for node in nodes:
            node.stop()

    assert msgpack.unpackb(replies[-1].data)["ok"] is True


@pytest.mark.e2e
async def test_permissions_with_the_real_router_and_its_jetstream_store(
    start_nats: StartNats, permissions_env: None, tmp_path: Path
) -> None:
    server = start_nats("-c", PERMISSIONS_CONF)
    router = router_process(
        tmp_path,
        nats_url=server.url,
        AEGIS_NATS_USER="router",
        AEGIS_NATS_PASSWORD=ROUTER_PW,
        AEGIS_STORE="jetstream",
    )
    async with router:
        config = ClientConfig(auth=SERVICE, **QUICK)
        async with ServiceClient(server.url, config) as client, client.watch("billing") as events:
            instance = await client.register("billing", "billing-1")
            registered = await asyncio.wait_for(anext(events), 5)
            found = await client.discover("billing")
            await client.deregister("billing", "billing-1")
            deregistered = await asyncio.wait_for(anext(events), 5)
            listed = (await router.get("/api/v1/admin/services")).json()

    assert instance.instance_id == "billing-1"
    assert [i.instance_id for i in found] == ["billing-1"]
    assert (registered.event.value, deregistered.event.value) == ("registered", "deregistered")
    assert listed["total"] == 1
    assert "violation" not in router.logs().lower()


@pytest.mark.parametrize("server_asks", [False, True])
async def test_credentials_a_server_does_not_ask_for_are_a_warning_at_start(
    start_nats: StartNats, tmp_path: Path, server_asks: bool
) -> None:
    # Issue 25: credentials given to a server without auth were accepted silently,
    # leaving the operator to believe the bus was closed.
    password = "router-" + secrets.token_hex(8)
    server = start_nats(*(["--user", "aegis", "--pass", password] if server_asks else []))
    router = router_process(
        tmp_path, nats_url=server.url, AEGIS_NATS_USER="aegis", AEGIS_NATS_PASSWORD=password
    )
    async with router:
        listed = await router.get("/api/v1/admin/services")
    assert listed.status_code == 200
    warned = "nats_credentials_unused" in router.logs()
    assert warned is not server_asks
    assert password not in router.logs()
