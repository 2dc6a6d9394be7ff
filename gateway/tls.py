"""HTTPS with client certificates under uvicorn, with the certificate visible to the ASGI app.

Theory of operation. A 2030.5 client is known by the LFDI of its TLS client certificate
(CSIP_RULES §7), so the app must see that certificate. uvicorn verifies client certificates but
does not pass them on. The ASGI ``tls`` extension
(https://asgi.readthedocs.io/en/latest/specs/tls.html) is the standard place for them, so we put
them there:

- asyncio calls a protocol's ``connection_made`` only once the TLS handshake is complete, and
  uvicorn makes one protocol object per connection. ``H11TlsProtocol`` (and
  ``HttpToolsTlsProtocol`` when httptools is installed) reads the peer certificate, version and
  cipher from the transport's ``ssl_object`` there, once per connection.
- It then replaces the protocol's ``self.app`` (which uvicorn reads for every request) with a
  thin wrapper that adds ``scope["extensions"]["tls"]`` before calling the real app. Nothing of
  uvicorn's request handling is copied or overridden.
- On a plain-HTTP connection there is no ``ssl_object``, the app is left alone and the scope has
  no ``tls`` extension, as the spec says. The admin listener uses the same protocol class.

``make_server`` builds a ``uvicorn.Server`` with that protocol and *our* ``SSLContext`` (through
uvicorn's ``ssl_context_factory`` hook, so uvicorn never builds its own from file paths), and with
uvicorn's X-Forwarded-For rewriting off, because ``gateway.identity`` trusts a proxy header only
when ``scope["client"]`` is the real TCP peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypedDict

import uvicorn
from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# CSIP §5.2.1 / IEEE 2030.5 §6.11: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 is the suite every client
# supports, so it is offered first and the server's order wins. The AES-GCM suites keep ordinary
# TLS 1.2 tools (browsers, curl builds without CCM) working. TLS 1.3 suites are OpenSSL's.
CSIP_CIPHER = "ECDHE-ECDSA-AES128-CCM8"
CSIP_CIPHER_SUITE = 0xC0AE  # its IANA number, as the tls extension reports it
TLS12_CIPHERS = (
    CSIP_CIPHER,
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
)
TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The device listener's context: TLS 1.2 or 1.3, client certificate from ``ca`` required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(TLS12_CIPHERS))  # TLS 1.2 only; TLS 1.3 suites are separate
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsExtension(TypedDict):
    """``scope["extensions"]["tls"]`` as the ASGI TLS extension spec defines it."""

    server_cert: str | None
    client_cert_chain: list[str]
    client_cert_name: str | None
    client_cert_error: str | None
    tls_version: int | None
    cipher_suite: int | None


def tls_extension(ssl_object: ssl.SSLObject) -> TlsExtension:
    """The tls extension of a connection whose handshake is complete.

    Python's ssl gives only the peer's own certificate (not its chain), which is all the LFDI
    needs. ``client_cert_error`` is always None: with CERT_REQUIRED a bad certificate never
    gets this far.
    """
    peer_der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    subject: str | None = None
    if peer_der:
        chain.append(ssl.DER_cert_to_PEM_cert(peer_der))
        subject = _subject_name(peer_der)
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    return TlsExtension(
        server_cert=None,
        client_cert_chain=chain,
        client_cert_name=subject,
        client_cert_error=None,
        tls_version=TLS_VERSIONS.get(version) if version else None,
        cipher_suite=_cipher_suite(ssl_object, cipher[0]) if cipher else None,
    )


def _subject_name(der: bytes) -> str | None:
    """RFC 4514 subject, or None: cryptography is stricter than OpenSSL about some encodings
    seen in the field, and a certificate OpenSSL verified must not break the connection."""
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None


_CIPHER_SUITES: dict[str, int] = {}


def _cipher_suite(ssl_object: ssl.SSLObject, name: str) -> int | None:
    """The IANA number of an OpenSSL cipher name (OpenSSL ids are 0x0300XXXX)."""
    if name not in _CIPHER_SUITES:
        for description in ssl_object.context.get_ciphers():
            _CIPHER_SUITES[description["name"]] = description["id"] & 0xFFFF
    return _CIPHER_SUITES.get(name)


def _app_for_connection(app: ASGIApp, transport: asyncio.BaseTransport) -> ASGIApp:
    """``app`` itself on plain HTTP; on TLS, ``app`` with this connection's tls extension."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return app
    extension = tls_extension(ssl_object)

    async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # A fresh dict per request: the app may not change what the next request sees.
            scope["extensions"] = {
                **(scope.get("extensions") or {}),
                "tls": {**extension, "client_cert_chain": list(extension["client_cert_chain"])},
            }
        await app(scope, receive, send)

    return app_with_tls


class H11TlsProtocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI tls extension on TLS connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _app_for_connection(self.app, transport)


TlsHttpProtocol: type[asyncio.Protocol] = H11TlsProtocol
"""The protocol ``make_server`` uses: httptools' (faster) when installed, as uvicorn's "auto"."""

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional
    pass
else:

    class HttpToolsTlsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, adding the ASGI tls extension on TLS connections."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app = _app_for_connection(self.app, transport)

    TlsHttpProtocol = HttpToolsTlsProtocol


def make_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    **uvicorn_options: Any,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` whose scopes carry the tls extension on TLS connections.

    ``ssl_context=None`` serves plain HTTP (the admin listener). Several servers can share one
    loop: ``await asyncio.gather(device.serve(), admin.serve())``. ``port=0`` binds an ephemeral
    port; read it with ``bound_port`` once ``server.started`` is true.

    uvicorn's ``ssl_*`` options are refused: they would build a second context, one that by
    default does not ask for client certificates. ``proxy_headers`` defaults to False so that
    ``scope["client"]`` stays the TCP peer that ``gateway.identity`` checks proxies against.
    """
    refused = sorted(option for option in uvicorn_options if option.startswith("ssl_"))
    if refused:
        raise TypeError(f"pass an SSLContext (server_ssl_context) instead of {refused}")
    options: dict[str, Any] = {"http": TlsHttpProtocol, "proxy_headers": False, **uvicorn_options}
    if ssl_context is not None:

        def use_our_context(
            _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
        ) -> ssl.SSLContext:
            return ssl_context

        options["ssl_context_factory"] = use_our_context
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (what ``port=0`` turned into)."""
    listeners = getattr(server, "servers", None)
    if not server.started or not listeners:
        raise RuntimeError("the server is not listening yet")
    for listener in listeners:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no listening socket")


async def wait_until_started(server: uvicorn.Server, *, timeout: float = 10.0) -> int:
    """Wait for ``server.serve()``, running in another task, to listen; return its port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not server.started:
        if server.should_exit or loop.time() > deadline:
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.01)
    return bound_port(server)


@contextlib.contextmanager
def no_signal_capture() -> Iterator[None]:
    """Use as ``server.capture_signals`` when the caller handles SIGINT/SIGTERM itself (several
    servers in one loop: uvicorn's own handlers would each stop only their server)."""
    yield
