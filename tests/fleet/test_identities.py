"""Fleet certificates: issued by the PKI's CA once, loaded afterwards, reissued for a new CA."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.kernel import lfdi_from_certificate
from fleet.identities import IDENTITIES_FILE, ensure_identities, fleet_directory
from gateway.pki import ensure_pki


def test_issued_by_the_ca_with_the_lfdi_of_the_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, devices=0, aggregators=0)
    identities = ensure_identities(tmp_path, 4, bundles=True)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert [i.name for i in identities] == [f"fleet-00000{n}" for n in range(1, 5)]
    assert len({i.lfdi for i in identities}) == 4
    for identity in identities:
        certificate = x509.load_pem_x509_certificate(identity.certificate.encode())
        certificate.verify_directly_issued_by(ca)
        der = certificate.public_bytes(serialization.Encoding.DER)
        assert identity.lfdi == lfdi_from_certificate(der)
        assert identity.bundle is not None
        assert stat.S_IMODE(identity.bundle.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in identity.bundle.read_bytes()
    store = fleet_directory(tmp_path) / IDENTITIES_FILE
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


def test_a_second_run_loads_the_same_devices_and_grows(tmp_path: Path) -> None:
    ensure_pki(tmp_path, devices=0, aggregators=0)
    first = ensure_identities(tmp_path, 3)
    store = fleet_directory(tmp_path) / IDENTITIES_FILE
    written = store.stat().st_mtime_ns
    again = ensure_identities(tmp_path, 2)
    assert [i.lfdi for i in again] == [i.lfdi for i in first[:2]]
    assert store.stat().st_mtime_ns == written  # nothing issued, nothing written
    more = ensure_identities(tmp_path, 5)
    assert [i.lfdi for i in more[:3]] == [i.lfdi for i in first]
    assert len({i.lfdi for i in more}) == 5


def test_a_new_ca_reissues_every_certificate(tmp_path: Path) -> None:
    ensure_pki(tmp_path, devices=0, aggregators=0)
    before = ensure_identities(tmp_path, 2)
    ensure_pki(tmp_path, devices=0, aggregators=0, force=True)
    after = ensure_identities(tmp_path, 2)
    assert not {i.lfdi for i in before} & {i.lfdi for i in after}


def test_a_torn_store_keeps_what_is_whole(tmp_path: Path) -> None:
    ensure_pki(tmp_path, devices=0, aggregators=0)
    first = ensure_identities(tmp_path, 3)
    store = fleet_directory(tmp_path) / IDENTITIES_FILE
    store.write_bytes(store.read_bytes()[:-40])  # an interrupted write cut the last line
    again = ensure_identities(tmp_path, 3)
    assert [i.lfdi for i in again[:2]] == [i.lfdi for i in first[:2]]
    assert again[2].lfdi != first[2].lfdi


def test_no_ca_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="csip pki init"):
        ensure_identities(tmp_path, 1)
