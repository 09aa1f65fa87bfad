"""The demo refuses a port another server listens on, and takes one a stopped server left."""

from __future__ import annotations

import socket

from tongcha.sim.demo import port_free


def test_a_port_another_server_listens_on_is_not_free() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_free("127.0.0.1", server.getsockname()[1])


def test_the_port_of_a_server_just_stopped_is_free_though_its_connections_linger() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server ends the connection first: it lingers in TIME_WAIT
            client.recv(1)
    with socket.socket() as plain:  # a bind without SO_REUSEADDR is refused meanwhile
        try:
            plain.bind(("127.0.0.1", port))
            lingering = False
        except OSError:
            lingering = True
    assert lingering
    assert port_free("127.0.0.1", port)
