"""Real processes for integration and end-to-end tests: nats-server and aegis-router.

Everything listens on free loopback ports, so tests never touch a developer's
own NATS on 4222 or router on 8000. ``free_port`` reserves each port for the
process that asked (see there), so pytest-xdist workers side by side, or two
test runs on one machine, never hand the same port to two servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aegis.router.bus.embedded import find_binary

START_TIMEOUT = 20.0


def _port_range() -> range:
    """Where ``free_port`` looks: below the kernel's ephemeral range (the local ports it
    gives ``connect()`` and ``bind(0)``), so no client connection of any test takes a
    port between its reservation and the server binding it, or while a server restarts
    on it."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(part) for part in text.split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - 10000 >= 2000:
        return range(10000, low)
    return range(high + 1, 65536)


_PORTS = _port_range()
_LOCKS = Path(tempfile.gettempdir()) / f"aegis-test-ports-{os.getuid()}"
_next_port = random.randrange(len(_PORTS))  # each process starts somewhere else
# The lock files of the ports this process holds, newest last. A few hundred ports
# back are long done with (a test's servers go with it), so the oldest is let go.
_held: deque[int] = deque()
_HOLD = 256


def _reserve(port: int) -> bool:
    """Lock ``port``'s file for this process; False if another process holds it."""
    fd = os.open(_LOCKS / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held.append(fd)
    if len(_held) > _HOLD:
        os.close(_held.popleft())  # closing it releases the lock
    return True


def free_port() -> int:
    """A loopback TCP port nothing listens on, reserved for this process.

    The kernel's ``bind(0)`` answer is free only until the socket closes: before the
    server (another process) binds it, a parallel worker can be given the same port,
    or a client connection can take it as its local port. So ports come from outside
    the ephemeral range, one after another (a port comes back only after the whole
    range), each locked with ``flock`` on a file per port: processes running these
    helpers never share one, and the lock goes when its process does, however it ends.
    """
    global _next_port
    _LOCKS.mkdir(exist_ok=True)
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port]
        _next_port = (_next_port + 1) % len(_PORTS)
        if _reserve(port):
            if port_is_free(port):
                return port
            os.close(_held.pop())  # something else listens there: not ours to hand out
    raise RuntimeError(f"no free port in {_PORTS}")


def wait_for_port(
    port: int,
    timeout: float = START_TIMEOUT,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until something accepts connections on 127.0.0.1:port; with ``process``
    (the server meant to listen there), fail as soon as it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def port_is_free(port: int) -> bool:
    """True if 127.0.0.1:port can be bound."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a process and reap it; SIGKILL if it lingers. Returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class NatsServer:
    """A real nats-server with JetStream on a free loopback port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart on the same port and data) and wait until it listens."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [str(find_binary()), "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-js", "-sd", str(self.data_dir), *self.extra_args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        """Stop it."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def nats_cluster(base: Path, size: int = 3) -> list[NatsServer]:
    """``size`` nats-servers routed into one JetStream cluster (not started)."""
    cluster_ports = [free_port() for _ in range(size)]
    nodes = []
    for i, cluster_port in enumerate(cluster_ports):
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports if p != cluster_port)
        args = ["-n", f"node-{i}", "--cluster_name", "aegis-test"]
        args += ["--cluster", f"nats://127.0.0.1:{cluster_port}", "--routes", routes]
        nodes.append(NatsServer(data_dir=base / f"node-{i}", extra_args=args))
    return nodes


@dataclass
class RouterProcess:
    """A real ``aegis-router`` process (``python -m aegis.router``); make one with
    ``router_process``.

    As a context manager it is started (and ready) on entry and stopped on exit;
    ``async with`` does both in a thread, so the test's event loop (and any SDK
    client heartbeating on it) keeps running meanwhile.
    """

    log_path: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """Base URL of the admin REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to be ready."""
        env = {**os.environ, "AEGIS_HTTP_PORT": str(self.http_port), **self.env}
        env.setdefault("AEGIS_LOG_FORMAT", "json")
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aegis.router", *self.args],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        return self.process

    def start(self) -> None:
        """Start and wait until /healthz answers and NATS is subscribed."""
        process = self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"aegis-router exited {process.returncode}:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                healthy = httpx.get(f"{self.http_url}/healthz", timeout=0.5).status_code == 200
                if healthy and "router_ready" in self.logs():
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"aegis-router not ready after {START_TIMEOUT}s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop it with ``sig`` (SIGTERM: graceful); returns the exit code."""
        code = 0
        if self.process is not None:
            code = stop_process(self.process, sig)
            self.process = None
            self.log_file.close()
        return code

    def run(self, timeout: float = 60.0) -> int:
        """Start it and wait until it exits by itself (a start-up failure); the exit code."""
        process = self.spawn()
        try:
            return process.wait(timeout)
        finally:
            self.stop()

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def get(self, path: str) -> httpx.Response:
        """GET ``path`` of its HTTP API, on a new connection, without blocking the loop."""
        async with httpx.AsyncClient(base_url=self.http_url, timeout=5) as http:
            return await http.get(path)

    async def delete(self, path: str) -> httpx.Response:
        """DELETE ``path`` of its HTTP API, on a new connection, without blocking the loop."""
        async with httpx.AsyncClient(base_url=self.http_url, timeout=5) as http:
            return await http.delete(path)

    def __enter__(self) -> RouterProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> RouterProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


def router_process(
    directory: Path,
    *,
    nats_url: str | None = None,
    name: str = "router",
    args: Sequence[str] = (),
    **env: str,
) -> RouterProcess:
    """An ``aegis-router`` on a free HTTP port, logging to ``directory/<name>.log``.

    ``nats_url`` becomes ``AEGIS_NATS_URL`` (none: the router starts its bundled
    nats-server); ``env`` adds ``AEGIS_*`` settings. Not started yet: enter it
    (``with``/``async with``) to start it and have it stopped, or ``run()`` it
    when it is expected to exit by itself.
    """
    if nats_url is not None:
        env["AEGIS_NATS_URL"] = nats_url
    return RouterProcess(log_path=directory / f"{name}.log", env=env, args=list(args))


# Liveness timings in fractions of a second, for end-to-end tests of expiry. Shorter
# than shared leases honour (the router refuses them with the jetstream store), so
# they go with the memory store: one router, no membership.
QUICK_HEARTBEAT, QUICK_UNHEALTHY, QUICK_OFFLINE, QUICK_REMOVE = 0.2, 1.0, 2.0, 3.0


def quick_router_process(directory: Path, nats_url: str) -> RouterProcess:
    """``router_process`` on the memory store with the QUICK_* liveness timings."""
    return router_process(
        directory,
        nats_url=nats_url,
        AEGIS_STORE="memory",
        AEGIS_HEARTBEAT_INTERVAL=str(QUICK_HEARTBEAT),
        AEGIS_UNHEALTHY_AFTER=str(QUICK_UNHEALTHY),
        AEGIS_OFFLINE_AFTER=str(QUICK_OFFLINE),
        AEGIS_REMOVE_AFTER=str(QUICK_REMOVE),
    )


def run_on_terminal(
    command: list[str], env: dict[str, str], timeout: float = 60.0
) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as stdout and stderr, as a user would.

    Returns the exit code and everything it printed.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    code = stop_process(process, signal.SIGKILL) if process.poll() is None else process.wait()
    return code, b"".join(chunks).decode(errors="replace")


@contextlib.contextmanager
def web_console_process(
    log: Path,
    api_url: str,
    *,
    token: str | None = None,
    secret: str | None = None,
    interval: float | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``aegis-console --web`` on a free loopback port, its output in ``log``; yields the
    page's URL and the server's process. Stopped on exit."""
    port = free_port()
    env = {**os.environ, "AEGIS_API_URL": api_url}
    for name, value in (
        ("AEGIS_ADMIN_TOKEN", token),
        ("AEGIS_CONSOLE_WEB_SECRET", secret),
        ("AEGIS_CONSOLE_INTERVAL", None if interval is None else str(interval)),
    ):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "aegis.console.cli", "--web", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        stop_process(process)
