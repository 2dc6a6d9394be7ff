"""The gateway's transport: mutual TLS under uvicorn, the ASGI tls extension, client identity.

Real HTTPS on 127.0.0.1 with real certificates from the development PKI; httpx is the client.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from engine.kernel.identity import lfdi_from_certificate, sfdi_from_lfdi
from gateway.identity import ClientIdentity, IdentityError, identity_from_scope, parse_networks
from gateway.pki import Pki
from gateway.tls import (
    CSIP_CIPHER,
    CSIP_CIPHER_SUITE,
    Message,
    Receive,
    Scope,
    Send,
    bound_port,
    make_server,
    wait_until_started,
)
from tests.gateway.tls_fixtures import (
    certificate_der,
    client_context,
    device_listener_context,
    serving,
)

TLS_1_2 = 0x0303
TLS_1_3 = 0x0304
TLS13_SUITES = {0x1301, 0x1302, 0x1303}
LOCALHOST = parse_networks(["127.0.0.1/32"])
ELSEWHERE = parse_networks(["10.0.0.0/8"])


def _identity_json(identity: ClientIdentity | None) -> dict[str, Any] | None:
    if identity is None:
        return None
    return {"lfdi": identity.lfdi, "sfdi": identity.sfdi, "via_proxy": identity.via_proxy}


class ScopeEcho:
    """An ASGI app that answers with what it saw: peer, tls extension and resolved identities.

    ``trusting_localhost`` treats 127.0.0.1 as a trusted proxy, ``trusting_elsewhere`` does not,
    so one request shows both sides of the proxy rule.
    """

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        try:
            answer = {
                "client": scope["client"],
                "tls": (scope.get("extensions") or {}).get("tls"),
                "trusting_localhost": _identity_json(
                    identity_from_scope(scope, trusted_proxies=LOCALHOST)
                ),
                "trusting_elsewhere": _identity_json(
                    identity_from_scope(scope, trusted_proxies=ELSEWHERE)
                ),
            }
            status = 200
        except IdentityError as exc:
            answer, status = {"error": str(exc)}, 400
        await _respond(send, status, answer)


async def _respond(send: Send, status: int, answer: object) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@pytest.fixture(scope="module")
def device_listener(pki: Pki) -> Iterator[tuple[str, ScopeEcho]]:
    echo = ScopeEcho()
    with serving(echo, ssl_context=device_listener_context(pki)) as url:
        yield url, echo


@pytest.fixture(scope="module")
def admin_listener() -> Iterator[str]:
    with serving(ScopeEcho()) as url:
        yield url


def _get(url: str, context: ssl.SSLContext, **headers: str) -> httpx.Response:
    with httpx.Client(verify=context) as client:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response


def _nginx_escaped(pem: str) -> str:
    """``$ssl_client_escaped_cert``: the PEM, URL-encoded."""
    return quote(pem, safe="")


# Over real HTTPS


@pytest.mark.parametrize("name", ["device1", "device2", "aggregator1"])
def test_app_sees_the_lfdi_and_sfdi_of_the_client_certificate(
    pki: Pki, device_listener: tuple[str, ScopeEcho], name: str
) -> None:
    url, _ = device_listener
    identity = pki.identities[name]
    answer = _get(url, client_context(pki, identity)).json()

    lfdi = lfdi_from_certificate(certificate_der(identity.cert))
    assert answer["trusting_elsewhere"] == {
        "lfdi": lfdi,
        "sfdi": sfdi_from_lfdi(lfdi),
        "via_proxy": False,
    }
    assert (lfdi, sfdi_from_lfdi(lfdi)) == (identity.lfdi, identity.sfdi)
    tls = answer["tls"]
    assert tls["client_cert_name"] == f"CN={name}"
    assert tls["client_cert_error"] is None
    assert tls["server_cert"] is None
    assert ssl.PEM_cert_to_DER_cert(tls["client_cert_chain"][0]) == certificate_der(identity.cert)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_without_certificate_is_refused(
    pki: Pki, device_listener: tuple[str, ScopeEcho], version: ssl.TLSVersion
) -> None:
    url, echo = device_listener
    before = echo.requests
    with pytest.raises(httpx.TransportError):
        _get(url, client_context(pki, None, maximum_version=version))
    assert echo.requests == before


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_certificate_from_another_ca_is_refused(
    pki: Pki, device_listener: tuple[str, ScopeEcho], version: ssl.TLSVersion
) -> None:
    url, echo = device_listener
    before = echo.requests
    stranger = client_context(pki, pki.identities["stranger"], maximum_version=version)
    with pytest.raises(httpx.TransportError):
        _get(url, stranger)
    assert echo.requests == before


def test_tls12_client_gets_the_csip_ccm8_suite_even_when_it_prefers_gcm(
    pki: Pki, device_listener: tuple[str, ScopeEcho]
) -> None:
    """CSIP §5.2.1: the server's order wins, and CCM8 is first in it."""
    url, _ = device_listener
    context = client_context(
        pki,
        pki.identities["device1"],
        maximum_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:" + CSIP_CIPHER,
    )
    with httpx.Client(verify=context) as client:
        response = client.get(url)
        client_side = response.extensions["network_stream"].get_extra_info("ssl_object")
        assert client_side.cipher()[:2] == (CSIP_CIPHER, "TLSv1.2")

    tls = response.json()["tls"]
    assert (tls["tls_version"], tls["cipher_suite"]) == (TLS_1_2, CSIP_CIPHER_SUITE)


def test_tls12_client_without_ccm8_falls_back_to_aes_gcm(
    pki: Pki, device_listener: tuple[str, ScopeEcho]
) -> None:
    """Python's and most tools' default cipher lists leave CCM out; they must still connect."""
    url, _ = device_listener
    context = client_context(pki, pki.identities["device1"], maximum_version=ssl.TLSVersion.TLSv1_2)
    tls = _get(url, context).json()["tls"]
    assert tls["tls_version"] == TLS_1_2
    assert tls["cipher_suite"] in {0xC02B, 0xC02C}  # ECDHE-ECDSA-AES128/256-GCM


def test_tls13_client_is_served(pki: Pki, device_listener: tuple[str, ScopeEcho]) -> None:
    url, _ = device_listener
    answer = _get(url, client_context(pki, pki.identities["device2"])).json()
    assert answer["tls"]["tls_version"] == TLS_1_3
    assert answer["tls"]["cipher_suite"] in TLS13_SUITES
    assert answer["trusting_elsewhere"]["lfdi"] == pki.identities["device2"].lfdi


def test_device_cannot_claim_another_identity_with_the_proxy_header(
    pki: Pki, device_listener: tuple[str, ScopeEcho]
) -> None:
    """Over TLS from an untrusted address, the header is ignored: the certificate decides."""
    url, _ = device_listener
    other = _nginx_escaped(pki.identities["device2"].cert.read_text())
    answer = _get(url, client_context(pki, pki.identities["device1"]), x_client_cert=other).json()
    assert answer["trusting_elsewhere"]["lfdi"] == pki.identities["device1"].lfdi


# Over plain HTTP (the admin listener, or behind a TLS-terminating proxy)


def test_plain_http_has_no_tls_extension_and_no_identity(admin_listener: str) -> None:
    answer = httpx.get(admin_listener).json()
    assert answer["tls"] is None
    assert answer["trusting_localhost"] is None
    assert answer["trusting_elsewhere"] is None


def test_proxy_header_is_used_only_from_a_trusted_address(pki: Pki, admin_listener: str) -> None:
    device = pki.identities["device2"]
    header = _nginx_escaped(device.cert.read_text())
    answer = httpx.get(admin_listener, headers={"x-client-cert": header}).json()
    assert answer["trusting_localhost"] == {
        "lfdi": device.lfdi,
        "sfdi": device.sfdi,
        "via_proxy": True,
    }
    assert answer["trusting_elsewhere"] is None


def test_forwarded_for_does_not_change_the_peer_the_proxy_rule_checks(
    admin_listener: str,
) -> None:
    answer = httpx.get(admin_listener, headers={"x-forwarded-for": "10.1.2.3"}).json()
    assert answer["client"][0] == "127.0.0.1"


def test_malformed_header_from_a_trusted_proxy_is_a_clear_error(admin_listener: str) -> None:
    response = httpx.get(admin_listener, headers={"x-client-cert": "-----BEGIN%20nonsense"})
    assert response.status_code == 400
    assert "not a PEM certificate" in response.json()["error"]


def test_device_and_admin_listeners_share_one_event_loop(pki: Pki) -> None:
    """How ``csip serve`` runs them: two uvicorn servers under one asyncio.gather."""
    device_echo, admin_echo = ScopeEcho(), ScopeEcho()
    device1 = pki.identities["device1"]
    answers: dict[str, Any] = {}

    async def main() -> None:
        device = make_server(
            device_echo,
            host="127.0.0.1",
            port=0,
            ssl_context=device_listener_context(pki),
            lifespan="off",
            log_config=None,
        )
        admin = make_server(
            admin_echo, host="127.0.0.1", port=0, ssl_context=None, lifespan="off", log_config=None
        )
        running = asyncio.gather(device.serve(), admin.serve())
        try:
            device_port = await wait_until_started(device)
            admin_port = await wait_until_started(admin)
            async with httpx.AsyncClient(verify=client_context(pki, device1)) as client:
                answers["device"] = (await client.get(f"https://127.0.0.1:{device_port}/")).json()
                answers["admin"] = (await client.get(f"http://127.0.0.1:{admin_port}/")).json()
        finally:
            device.should_exit = admin.should_exit = True
            await running

    asyncio.run(main())
    assert answers["device"]["trusting_elsewhere"]["lfdi"] == device1.lfdi
    assert answers["admin"]["tls"] is None


def test_make_server_refuses_uvicorns_own_ssl_options(pki: Pki) -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        make_server(
            ScopeEcho(), host="127.0.0.1", port=0, ssl_context=None, ssl_certfile=pki.server_cert
        )


def test_bound_port_of_a_server_not_started_is_an_error() -> None:
    server = make_server(ScopeEcho(), host="127.0.0.1", port=0, ssl_context=None, log_config=None)
    with pytest.raises(RuntimeError):
        bound_port(server)


def test_serving_stops_its_server_and_joins_its_thread() -> None:
    def server_threads() -> int:
        return sum(thread.name == "test-uvicorn" for thread in threading.enumerate())

    before = server_threads()
    with serving(ScopeEcho()) as url:
        assert httpx.get(url).status_code == 200
        assert server_threads() == before + 1
    assert server_threads() == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


# identity_from_scope on crafted scopes


def _scope(
    client: str | None = "10.0.0.7",
    headers: list[tuple[bytes, bytes]] | None = None,
    tls_pem: str | None = None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "client": (client, 51234) if client else None,
        "headers": headers or [],
    }
    if tls_pem is not None:
        scope["extensions"] = {"tls": {"client_cert_chain": [tls_pem], "client_cert_error": None}}
    return scope


def _header_encodings(pem: str) -> dict[str, str]:
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return {
        "nginx escaped PEM": _nginx_escaped(pem),
        "URL-encoded PEM keeping slashes": quote(pem),
        "PEM with newlines as spaces": pem.strip().replace("\n", " "),
        "PEM with tabs (old nginx $ssl_client_cert)": pem.strip().replace("\n", "\n\t"),
        "base64 DER": body,
        "base64 DER, URL-encoded": quote(body, safe=""),
    }


@pytest.mark.parametrize(
    "encoding", list(_header_encodings("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"))
)
def test_trusted_proxy_header_accepts_the_usual_encodings(pki: Pki, encoding: str) -> None:
    device = pki.identities["device1"]
    value = _header_encodings(device.cert.read_text())[encoding]
    scope = _scope(headers=[(b"x-client-cert", value.encode())])

    identity = identity_from_scope(scope, trusted_proxies=ELSEWHERE)

    assert identity == ClientIdentity(
        lfdi=device.lfdi,
        sfdi=device.sfdi,
        certificate_der=certificate_der(device.cert),
        via_proxy=True,
    )


def test_header_from_an_untrusted_peer_is_ignored(pki: Pki) -> None:
    header = _nginx_escaped(pki.identities["device1"].cert.read_text())
    scope = _scope(client="192.0.2.1", headers=[(b"x-client-cert", header.encode())])
    assert identity_from_scope(scope, trusted_proxies=ELSEWHERE) is None
    assert identity_from_scope(scope) is None  # no trusted proxies configured at all


def test_header_is_ignored_without_a_peer_address(pki: Pki) -> None:
    header = _nginx_escaped(pki.identities["device1"].cert.read_text())
    scope = _scope(client=None, headers=[(b"x-client-cert", header.encode())])
    assert identity_from_scope(scope, trusted_proxies=parse_networks(["0.0.0.0/0"])) is None


def test_garbage_header_from_an_untrusted_peer_is_not_an_error() -> None:
    scope = _scope(client="192.0.2.1", headers=[(b"x-client-cert", b"garbage")])
    assert identity_from_scope(scope, trusted_proxies=ELSEWHERE) is None


def test_ipv4_mapped_peer_matches_an_ipv4_network(pki: Pki) -> None:
    header = _nginx_escaped(pki.identities["device1"].cert.read_text())
    scope = _scope(client="::ffff:10.0.0.7", headers=[(b"x-client-cert", header.encode())])
    identity = identity_from_scope(scope, trusted_proxies=ELSEWHERE)
    assert identity is not None
    assert identity.lfdi == pki.identities["device1"].lfdi


def test_custom_header_name(pki: Pki) -> None:
    header = _nginx_escaped(pki.identities["device1"].cert.read_text())
    scope = _scope(headers=[(b"ssl-client-cert", header.encode())])
    identity = identity_from_scope(scope, trusted_proxies=ELSEWHERE, proxy_header="SSL-Client-Cert")
    assert identity is not None
    assert identity.via_proxy


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-----BEGIN CERTIFICATE-----%0Anot*base64%0A-----END CERTIFICATE-----", "base64"),
        ("-----BEGIN%20CERTIFICATE-----", "not a PEM certificate"),
        (base64.b64encode(b"not a certificate").decode(), "not a certificate"),
        ("***", "base64"),
    ],
)
def test_malformed_certificate_in_a_trusted_header_raises(value: str, message: str) -> None:
    scope = _scope(headers=[(b"x-client-cert", value.encode())])
    with pytest.raises(IdentityError, match=message):
        identity_from_scope(scope, trusted_proxies=ELSEWHERE)


def test_header_sent_twice_by_a_trusted_proxy_raises(pki: Pki) -> None:
    header = _nginx_escaped(pki.identities["device1"].cert.read_text()).encode()
    scope = _scope(headers=[(b"x-client-cert", header), (b"x-client-cert", header)])
    with pytest.raises(IdentityError, match="2 times"):
        identity_from_scope(scope, trusted_proxies=ELSEWHERE)


def test_empty_header_from_a_trusted_proxy_means_no_certificate() -> None:
    scope = _scope(headers=[(b"x-client-cert", b"")])
    assert identity_from_scope(scope, trusted_proxies=ELSEWHERE) is None


def test_tls_extension_gives_the_identity(pki: Pki) -> None:
    device = pki.identities["aggregator1"]
    identity = identity_from_scope(_scope(tls_pem=device.cert.read_text()))
    assert identity is not None
    assert (identity.lfdi, identity.sfdi, identity.via_proxy) == (device.lfdi, device.sfdi, False)


def test_trusted_proxy_header_wins_over_the_proxys_own_tls_certificate(pki: Pki) -> None:
    """A proxy that re-encrypts to the gateway shows its own certificate; the header is the
    device's."""
    proxy, device = pki.identities["aggregator1"], pki.identities["device2"]
    header = _nginx_escaped(device.cert.read_text())
    scope = _scope(tls_pem=proxy.cert.read_text(), headers=[(b"x-client-cert", header.encode())])
    identity = identity_from_scope(scope, trusted_proxies=ELSEWHERE)
    assert identity is not None
    assert (identity.lfdi, identity.via_proxy) == (device.lfdi, True)


def test_parse_networks_reads_configuration_text() -> None:
    assert parse_networks(["127.0.0.1/32, 10.0.0.0/8", "", "::1"]) == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize("spec", ["10.0.0.1/8", "localhost", "300.0.0.0/8"])
def test_parse_networks_refuses_what_is_not_a_network(spec: str) -> None:
    with pytest.raises(ValueError, match="trusted proxies"):
        parse_networks([spec])


def test_identity_cache_parses_each_certificate_once_and_stays_bounded(pki: Pki) -> None:
    from gateway.identity import _IdentityCache

    parsed: list[str] = []

    def make(text: str) -> ClientIdentity:
        parsed.append(text)
        return ClientIdentity(lfdi=text, sfdi=0, certificate_der=b"", via_proxy=True)

    cache = _IdentityCache(size=2)
    assert cache.get("a", make) is cache.get("a", make)
    cache.get("b", make)
    cache.get("a", make)  # a is now the most recently used
    cache.get("c", make)  # evicts b
    assert len(cache) == 2
    cache.get("a", make)
    cache.get("b", make)
    assert parsed == ["a", "b", "c", "b"]


def test_a_refused_header_is_not_cached() -> None:
    from gateway.identity import _IdentityCache

    calls = 0

    def refuse(text: str) -> ClientIdentity:
        nonlocal calls
        calls += 1
        raise IdentityError("not a certificate")

    cache = _IdentityCache(size=4)
    for _ in range(2):
        with pytest.raises(IdentityError):
            cache.get("garbage", refuse)
    assert (calls, len(cache)) == (2, 0)
