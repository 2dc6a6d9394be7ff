"""``--keep-alive SECONDS``: how long an idle device connection stays open.

A device that polls again before the server closes its connection sends the next request on
it, without a new TLS handshake; one that comes back later finds the connection closed.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from gateway.pki import Pki
from tests.gateway.server_fixtures import Server, serve_refuses

KEEP_ALIVE = 1.0


@pytest.fixture(scope="module")
def server(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(
        server_pki,
        tmp_path_factory.mktemp("keep-alive") / "data",
        "--keep-alive",
        str(KEEP_ALIVE),
    ) as running:
        running.admin_ok("POST", "/devices", json={"lfdi": running.identity("device1").lfdi})
        yield running


def _connect(server: Server) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return server.tls("device1").wrap_socket(raw, server_hostname="localhost")


def _get_time(conn: ssl.SSLSocket) -> bytes:
    """GET /tm on an open connection; the raw response (status line, headers, body)."""
    conn.sendall(b"GET /tm HTTP/1.1\r\nHost: localhost\r\nAccept: application/sep+xml\r\n\r\n")
    data = b""
    while b"</Time>" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _closed_by_server(conn: ssl.SSLSocket, within: float) -> bool:
    conn.settimeout(within)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_a_connection_polled_again_within_the_keep_alive_is_reused(server: Server) -> None:
    with _connect(server) as conn:
        for _ in range(3):
            assert _get_time(conn).startswith(b"HTTP/1.1 200")
            time.sleep(KEEP_ALIVE / 3)


def test_an_idle_connection_is_closed_after_the_keep_alive(server: Server) -> None:
    with _connect(server) as conn:
        assert _get_time(conn).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert _closed_by_server(conn, within=KEEP_ALIVE + 2)
        assert time.monotonic() - began >= KEEP_ALIVE * 0.8


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_keep_alive_must_be_a_positive_number_of_seconds(value: str) -> None:
    assert "--keep-alive" in serve_refuses("--keep-alive", value)
