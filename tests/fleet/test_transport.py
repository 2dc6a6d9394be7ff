"""How a device's certificate travels in proxy-header mode: as nginx escapes it, and as the
server's identity code reads it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fleet.identities import ensure_identities
from fleet.transport import escaped_certificate
from gateway.identity import identity_from_scope, parse_networks
from gateway.pki import ensure_pki


def test_escaping_is_nginxs(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", devices=1, aggregators=0)
    (identity,) = ensure_identities(pki.directory, 1)
    assert escaped_certificate(identity.certificate) == quote(identity.certificate, safe="")
    # Anything that is not PEM text is still escaped the standard way.
    assert escaped_certificate("a%b é") == quote("a%b é", safe="")


def test_the_server_reads_the_header_as_the_devices_lfdi(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", devices=1, aggregators=0)
    identities = ensure_identities(pki.directory, 3)
    for identity in identities:
        header = escaped_certificate(identity.certificate)
        scope = {
            "type": "http",
            "client": ("127.0.0.1", 50000),
            "headers": [(b"x-client-cert", header.encode("latin-1"))],
        }
        found = identity_from_scope(scope, trusted_proxies=parse_networks(["127.0.0.1"]))
        assert found is not None and found.via_proxy
        assert found.lfdi == identity.lfdi
