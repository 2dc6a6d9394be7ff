"""The development PKI: what it issues, what it keeps, and what ``csip pki init`` prints."""

from __future__ import annotations

import argparse
import ipaddress
import json
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.kernel.identity import lfdi_from_certificate, sfdi_from_lfdi
from gateway.pki import Identity, Pki, add_subparser, describe, ensure_pki
from tests.gateway.tls_fixtures import certificate_der

CLIENTS = ["device1", "device2", "aggregator1"]


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def _extended_key_usage(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _lfdis(pki: Pki) -> dict[str, str]:
    return {name: identity.lfdi for name, identity in pki.identities.items()}


def _contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


# What it issues


def test_pki_writes_the_documented_files(pki: Pki) -> None:
    names = {path.name for path in pki.directory.iterdir()}
    expected = {"ca.pem", "ca.key", "server.pem", "server.key", "identities.json"}
    for client in [*CLIENTS, "stranger"]:
        expected |= {f"{client}.pem", f"{client}.key", f"{client}.bundle.pem"}
    assert names == expected
    assert [identity.kind for identity in pki.identities.values()] == [
        "device",
        "device",
        "aggregator",
        "stranger",
    ]


def test_keys_and_bundles_are_readable_by_the_owner_only(pki: Pki) -> None:
    secrets = [pki.ca_key, pki.server_key]
    secrets += [path for i in pki.identities.values() for path in (i.key, i.bundle)]
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_ca_is_a_self_signed_p256_ca_for_ten_years(pki: Pki) -> None:
    ca = _load(pki.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert _issued_by(ca, ca)
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3649) < lifetime < timedelta(days=3652)


def test_certificates_are_valid_from_a_few_minutes_ago(pki: Pki) -> None:
    """Devices whose clocks run a little behind must not see a certificate from the future."""
    paths = [pki.ca_cert, pki.server_cert, *(i.cert for i in pki.identities.values())]
    for path in paths:
        assert _load(path).not_valid_before_utc <= datetime.now(UTC) - timedelta(minutes=2)


def test_server_certificate_is_for_127_0_0_1_and_localhost(pki: Pki) -> None:
    server = _load(pki.server_cert)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    # clientAuth too: the server presents it to subscribers when it POSTs notifications.
    assert _extended_key_usage(server) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert _issued_by(server, _load(pki.ca_cert))


@pytest.mark.parametrize("name", CLIENTS)
def test_client_certificate_is_named_after_the_client_and_signed_by_the_ca(
    pki: Pki, name: str
) -> None:
    certificate = _load(pki.identities[name].cert)
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == [name]
    assert _extended_key_usage(certificate) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert _issued_by(certificate, _load(pki.ca_cert))


def test_stranger_is_signed_by_a_ca_nobody_trusts(pki: Pki) -> None:
    stranger = _load(pki.identities["stranger"].cert)
    assert not _issued_by(stranger, _load(pki.ca_cert))
    assert _extended_key_usage(stranger) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_identities_json_matches_the_certificates(pki: Pki) -> None:
    document = json.loads(pki.identities_file.read_text())
    assert list(document) == [*CLIENTS, "stranger"]
    for name, entry in document.items():
        lfdi = lfdi_from_certificate(certificate_der(pki.directory / entry["cert"]))
        assert entry["lfdi"] == lfdi == pki.identities[name].lfdi
        assert entry["sfdi"] == sfdi_from_lfdi(lfdi) == pki.identities[name].sfdi
        assert entry["key"] == f"{name}.key"
        assert entry["bundle"] == f"{name}.bundle.pem"
        assert entry["kind"] == pki.identities[name].kind


def test_bundle_holds_certificate_and_key_together(pki: Pki) -> None:
    device = pki.identities["device1"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(device.bundle)  # raises if the key does not match
    assert device.bundle.read_text().startswith(device.cert.read_text())


# What it keeps


def test_second_call_loads_the_same_pki_without_writing(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, devices=2, aggregators=1)
    files = _contents(tmp_path)
    second = ensure_pki(tmp_path, devices=2, aggregators=1)
    assert second.issued == ()
    assert _lfdis(second) == _lfdis(first)
    assert second == Pki(**{**first.__dict__, "issued": ()})
    assert _contents(tmp_path) == files


def test_force_issues_everything_anew(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, devices=1, aggregators=1)
    again = ensure_pki(tmp_path, devices=1, aggregators=1, force=True)
    assert set(again.issued) == {"ca", "server", "device1", "aggregator1", "stranger"}
    assert all(again.identities[n].lfdi != first.identities[n].lfdi for n in first.identities)


def test_more_devices_keep_the_existing_ones(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, devices=2, aggregators=0)
    grown = ensure_pki(tmp_path, devices=3, aggregators=0)
    assert grown.issued == ("device3",)
    assert grown.identities["device1"] == first.identities["device1"]
    assert grown.identities["device2"] == first.identities["device2"]


def test_a_missing_key_reissues_only_that_certificate(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, devices=2, aggregators=0)
    (tmp_path / "device2.key").unlink()
    repaired = ensure_pki(tmp_path, devices=2, aggregators=0)
    assert repaired.issued == ("device2",)
    assert repaired.identities["device2"].lfdi != first.identities["device2"].lfdi
    assert repaired.identities["device1"] == first.identities["device1"]


def test_a_new_ca_reissues_every_certificate_it_signed(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, devices=1, aggregators=0)
    (tmp_path / "ca.key").unlink()
    renewed = ensure_pki(tmp_path, devices=1, aggregators=0)
    assert renewed.issued == ("ca", "server", "device1")  # the stranger is still a stranger
    assert renewed.identities["stranger"] == first.identities["stranger"]


# csip pki init


def _csip_pki(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="csip")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["pki", *argv])


def test_pki_init_prints_the_lfdi_and_sfdi_of_each_written_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _csip_pki("init", "--dir", str(tmp_path), "--devices", "2", "--aggregators", "1")
    assert args.handler(args) == 0
    output = capsys.readouterr().out

    assert str(tmp_path / "ca.pem") in output
    assert str(tmp_path / "server.pem") in output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line}
    for name in [*CLIENTS, "stranger"]:
        lfdi = lfdi_from_certificate(certificate_der(tmp_path / f"{name}.pem"))
        kind = name.rstrip("0123456789")
        assert rows[name] == [
            name,
            kind,
            lfdi,
            f"{sfdi_from_lfdi(lfdi):012d}",
            str(tmp_path / f"{name}.pem"),
        ]


def test_pki_init_twice_prints_the_same_identities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _csip_pki("init", "--dir", str(tmp_path))
    args.handler(args)
    first = capsys.readouterr().out
    args.handler(args)
    second = capsys.readouterr().out
    assert "nothing (all loaded)" in second
    table = [line for line in first.splitlines() if line.startswith(("device", "aggregator"))]
    assert len(table) == 4
    assert table == [line for line in second.splitlines() if line in table]


def test_sfdi_is_printed_zero_padded_to_twelve_digits(tmp_path: Path) -> None:
    short = Identity(
        name="device1",
        kind="device",
        cert=tmp_path / "device1.pem",
        key=tmp_path / "device1.key",
        bundle=tmp_path / "device1.bundle.pem",
        lfdi="00000D1D907752314F590E9DFC8A604E3339D662",
        sfdi=sfdi_from_lfdi("00000D1D907752314F590E9DFC8A604E3339D662"),
    )
    pki = Pki(
        directory=tmp_path,
        ca_cert=tmp_path / "ca.pem",
        ca_key=tmp_path / "ca.key",
        server_cert=tmp_path / "server.pem",
        server_key=tmp_path / "server.key",
        identities_file=tmp_path / "identities.json",
        identities={"device1": short},
    )
    assert short.sfdi < 10**11
    assert f" {short.sfdi:012d} " in describe(pki)


def test_pki_init_refuses_a_negative_count() -> None:
    with pytest.raises(SystemExit):
        _csip_pki("init", "--dir", "x", "--devices", "-1")


def test_pki_init_reports_a_directory_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    args = _csip_pki("init", "--dir", str(not_a_directory))
    assert args.handler(args) == 2
    assert "csip pki init" in capsys.readouterr().err
