"""Fixtures and helpers for gateway tests over real HTTPS with real client certificates.

The root tests/conftest.py loads these fixtures as a plugin for every test module
(there is deliberately no conftest.py here); import the helpers as usual.

PYTEST_DONT_REWRITE: this module has no assertions, and the test modules import it before
pytest loads it as a plugin, which would otherwise warn that it cannot be rewritten.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.pki import Identity, Pki, ensure_pki
from gateway.tls import ASGIApp, bound_port, make_server, server_ssl_context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A development PKI shared by the whole session: device1, device2, aggregator1, stranger."""
    return ensure_pki(tmp_path_factory.mktemp("pki"), devices=2, aggregators=1)


def device_listener_context(pki: Pki) -> ssl.SSLContext:
    """The gateway's server context for this PKI (client certificates required)."""
    return server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert)


def client_context(
    pki: Pki,
    identity: Identity | None,
    *,
    maximum_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context trusting the PKI's CA and presenting ``identity``'s certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if maximum_version is not None:
        context.maximum_version = maximum_version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    return context


@contextmanager
def serving(app: ASGIApp, *, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1, on an ephemeral port, in a thread; yield its base URL.

    HTTPS with ``ssl_context``, plain HTTP without. The server is stopped, and its thread
    joined, when the block ends.
    """
    server = make_server(
        app,
        host="127.0.0.1",
        port=0,
        ssl_context=ssl_context,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{bound_port(server)}"
    finally:
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            raise RuntimeError("the test server did not stop")


def certificate_der(path: Path) -> bytes:
    """The DER bytes of a PEM certificate file (what the LFDI is computed over)."""
    return ssl.PEM_cert_to_DER_cert(path.read_text())
