"""The bundled nats-server's port check."""

from __future__ import annotations

import socket

from aegis.router.bus.embedded import port_is_free


def test_a_listening_port_is_taken() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_is_free("127.0.0.1", server.getsockname()[1])


def test_time_wait_connections_of_a_stopped_server_leave_the_port_free() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    # The server closes first, as nats-server does when it stops: its side of
    # the connection lingers in TIME-WAIT on ``port``.
    accepted.close()
    client.close()
    server.close()

    assert port_is_free("127.0.0.1", port)
