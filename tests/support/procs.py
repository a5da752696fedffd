"""Real processes for integration and end-to-end tests: nats-server and aegis-router.

Everything listens on free loopback ports, so tests never touch a developer's
own NATS on 4222 or router on 8000.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aegis.router.bus.embedded import find_binary

START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = START_TIMEOUT) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
        wait_for_port(self.port)

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
