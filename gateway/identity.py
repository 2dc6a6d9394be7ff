"""Who is calling: the client's LFDI and SFDI from its TLS certificate (CSIP_RULES §7).

The certificate comes from one of two places:

1. The ASGI ``tls`` extension, when the gateway terminates TLS itself (``gateway.tls`` puts the
   verified peer certificate there).
2. A header set by a TLS-terminating proxy (nginx: ``ssl_verify_client on;`` and
   ``proxy_set_header X-Client-Cert $ssl_client_escaped_cert;``), but only when the TCP peer is
   one of the configured trusted proxies. Anyone else could write that header, so from any
   other peer it is ignored, never an error and never trusted.

A trusted proxy's header wins over the connection's own certificate: a proxy that re-encrypts
to the gateway presents its own client certificate, and the device is the one in the header.

Pure functions over the scope, no FastAPI: the gateway's dependency calls ``identity_from_scope``
once per request and passes the result down.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cryptography import x509

from engine.kernel.identity import lfdi_from_certificate, sfdi_from_lfdi

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REPLICA_CERT_HEADER = "x-csip-client-cert"  # URL-encoded PEM, as a replica forwards it
REPLICA_TOKEN_HEADER = "x-csip-replica"

_PEM_BODY = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


class IdentityError(ValueError):
    """A client certificate that a trusted source sent but that cannot be read."""


@dataclass(frozen=True)
class ClientIdentity:
    """The caller as 2030.5 knows it; ``via_proxy`` says the certificate came from a header."""

    lfdi: str
    sfdi: int
    certificate_der: bytes
    via_proxy: bool


def identity_from_scope(
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    proxy_header: str = "x-client-cert",
    replica_token: str | None = None,
) -> ClientIdentity | None:
    """The client's identity, or None when the request carries no usable client certificate.

    Raises ``IdentityError`` when a trusted source (the tls extension, or a trusted proxy's
    header) carries something that is not a certificate, or a proxy sent the header twice.

    ``replica_token`` is for the primary's internal listener (``csip serve --processes N``):
    there the identity is the certificate a replica forwards in ``REPLICA_CERT_HEADER``, and
    only a request carrying the token in ``REPLICA_TOKEN_HEADER`` is believed.
    """
    if replica_token is not None:
        token = _single_header(scope, REPLICA_TOKEN_HEADER.encode())
        if token is None or not hmac.compare_digest(token.encode(), replica_token.encode()):
            raise IdentityError("this listener takes requests forwarded by replicas only")
        forwarded = _single_header(scope, REPLICA_CERT_HEADER.encode())
        return None if forwarded is None else _identity_from_header(forwarded)
    if trusted_proxies and _peer_is_trusted(scope.get("client"), trusted_proxies):
        header_value = _single_header(scope, proxy_header.lower().encode("latin-1"))
        if header_value:
            return _identity_from_header(header_value)

    tls = (scope.get("extensions") or {}).get("tls")
    if tls and tls.get("client_cert_chain"):
        return _identity_from_tls(next(iter(tls["client_cert_chain"])))
    return None


# Every device comes back every few minutes with the same certificate: parse each certificate
# text once. The caches hold a whole fleet (a poll cycle through more devices than an LRU holds
# would miss every time), keyed by a 16-byte digest of the text rather than the text itself
# (about 0.7 KB per device instead of 2). Only trusted sources reach them.
IDENTITY_CACHE = 1 << 18


class _IdentityCache:
    """LRU of identities by a digest of the certificate text that produced them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, ClientIdentity] = OrderedDict()

    def get(self, text: str, make: Callable[[str], ClientIdentity]) -> ClientIdentity:
        key = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        identity = make(text)  # raises IdentityError: nothing is kept
        self._entries[key] = identity
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return identity

    def __len__(self) -> int:
        return len(self._entries)


_FROM_TLS = _IdentityCache(IDENTITY_CACHE)
_FROM_HEADER = _IdentityCache(IDENTITY_CACHE)


def _identity_from_tls(pem: str) -> ClientIdentity:
    return _FROM_TLS.get(pem, _parse_tls)


def _identity_from_header(value: str) -> ClientIdentity:
    return _FROM_HEADER.get(value, _parse_header)


def _parse_tls(pem: str) -> ClientIdentity:
    # OpenSSL verified this certificate during the handshake: no second, stricter parse.
    der = _der_from_pem(pem, source="the TLS client certificate", parse=False)
    return _identity(der, via_proxy=False)


def _parse_header(value: str) -> ClientIdentity:
    return _identity(_der_from_header(value), via_proxy=True)


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """Networks from configuration text: ``["127.0.0.1/32,10.0.0.0/8", "::1"]``.

    Each item may hold several comma-separated networks; a bare address is a /32 (/128).
    Host bits set (``10.0.0.1/8``) are refused as the likely typo they are.
    """
    networks: list[Network] = []
    for spec in specs:
        for part in spec.split(","):
            text = part.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text))
            except ValueError as exc:
                raise ValueError(f"not a network for trusted proxies: {text!r} ({exc})") from None
    return tuple(networks)


def _peer_is_trusted(client: Any, trusted_proxies: Sequence[Network]) -> bool:
    if not client:
        return False  # e.g. a Unix socket: no address to trust
    try:
        address = ipaddress.ip_address(client[0])
    except (ValueError, TypeError, IndexError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return any(address in network for network in trusted_proxies)


def _single_header(scope: Mapping[str, Any], name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers") or () if key.lower() == name]
    if len(values) > 1:
        # A proxy sets this header once (nginx's proxy_set_header replaces the client's own);
        # two copies mean a proxy appended to a client-supplied one.
        raise IdentityError(f"the {name.decode('latin-1')} header appears {len(values)} times")
    if not values:
        return None
    return bytes(values[0]).decode("latin-1").strip() or None


def _der_from_header(value: str) -> bytes:
    """DER from what proxies send: URL-encoded PEM (nginx), PEM with newlines turned into
    spaces or tabs, or bare base64 DER (HAProxy ``ssl_c_der,base64``)."""
    text = unquote(value) if "%" in value else value  # never unquote_plus: '+' is base64
    if "-----BEGIN" in text:
        return _der_from_pem(text, source="the proxy's certificate header")
    der = _base64(text, source="the proxy's certificate header")
    _check_certificate(der, source="the proxy's certificate header")
    return der


def _der_from_pem(pem: str, *, source: str, parse: bool = True) -> bytes:
    match = _PEM_BODY.search(pem)
    if match is None:
        raise IdentityError(f"{source} is not a PEM certificate")
    der = _base64(match.group(1), source=source)
    if parse:
        _check_certificate(der, source=source)
    return der


def _check_certificate(der: bytes, *, source: str) -> None:
    """Refuse a header value that decodes but is not a certificate (truncated, wrong field)."""
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        raise IdentityError(f"{source} is not a certificate") from None


def _base64(text: str, *, source: str) -> bytes:
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{source} is not valid base64") from None


def _identity(der: bytes, via_proxy: bool) -> ClientIdentity:
    lfdi = lfdi_from_certificate(der)
    return ClientIdentity(
        lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi), certificate_der=der, via_proxy=via_proxy
    )
