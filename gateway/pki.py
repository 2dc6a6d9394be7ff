"""A development PKI: one CA, the gateway's server certificate, device and aggregator certificates.

Real CSIP deployments get their certificates from the SunSpec/2030.5 PKI; demos, tests and the
simulated fleet need something that works on one machine with no setup. ``ensure_pki`` writes
everything under one directory and is idempotent: a second call loads what is there and issues
only what is missing, expired or no longer signed by the CA, so device LFDIs stay stable across
runs (CSIP_RULES §7: the LFDI is a hash of the certificate, so a reissued certificate is a new
device). ``force=True`` issues everything anew.

Layout (names are fixed so tools and docs can point at them)::

    ca.pem ca.key                    the development CA (EC P-256, self-signed, 10 years)
    server.pem server.key            the gateway, for 127.0.0.1 and localhost (serverAuth)
    NAME.pem NAME.key NAME.bundle.pem   per client: device1..N, aggregator1..M, stranger
    identities.json                  client name -> cert, key, bundle, lfdi, sfdi, kind

``stranger`` is signed by a throwaway CA that nothing trusts: tests use it to check refusal.
Keys and bundles are written 0600.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.kernel.identity import lfdi_from_certificate, sfdi_from_lfdi

IdentityKind = Literal["device", "aggregator", "stranger"]

CA_VALIDITY = timedelta(days=3650)
# 825 days: the longest TLS server certificate some clients (macOS, browsers) still accept.
SERVER_VALIDITY = timedelta(days=825)
# Client certificates last as long as the CA: a 2030.5 device certificate is meant to live as
# long as the device, and a demo fleet should not need reprovisioning.
CLOCK_SKEW = timedelta(minutes=5)
SERVER_NAMES = ("127.0.0.1", "localhost")

CA_NAME = "csipstream development CA"
STRANGER_CA_NAME = "csipstream stranger CA (untrusted)"
IDENTITIES_FILE = "identities.json"


@dataclass(frozen=True)
class Identity:
    """A client of the gateway: where its files are and who the gateway will think it is."""

    name: str
    kind: IdentityKind
    cert: Path
    key: Path
    bundle: Path
    lfdi: str
    sfdi: int


@dataclass(frozen=True)
class Pki:
    """The files of a development PKI; ``issued`` names what this call had to (re)issue."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    identities_file: Path
    identities: dict[str, Identity]
    issued: tuple[str, ...] = ()

    def of_kind(self, kind: IdentityKind) -> list[Identity]:
        """The identities of one kind, in name order (device1, device2, ...)."""
        return [identity for identity in self.identities.values() if identity.kind == kind]


def client_names(devices: int, aggregators: int) -> list[tuple[str, IdentityKind]]:
    """The client certificates a PKI with these counts holds, in a stable order."""
    names: list[tuple[str, IdentityKind]] = [
        (f"device{n}", "device") for n in range(1, devices + 1)
    ]
    names += [(f"aggregator{n}", "aggregator") for n in range(1, aggregators + 1)]
    names.append(("stranger", "stranger"))
    return names


def ensure_pki(
    directory: Path, *, devices: int = 3, aggregators: int = 1, force: bool = False
) -> Pki:
    """Load the PKI under ``directory``, issuing whatever is missing (everything if ``force``).

    A certificate is kept when its files load, its key matches, it has not expired and it is
    signed by the current CA (the stranger: by anyone else). A new CA therefore reissues every
    certificate, and adding devices keeps the existing ones.
    """
    if devices < 0 or aggregators < 0:
        raise ValueError("the numbers of devices and aggregators cannot be negative")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    issued: list[str] = []

    ca = None if force else _load_pair(directory, "ca", now)
    if ca is None or not _is_self_signed_ca(ca[0]):
        ca = _issue_ca(CA_NAME, now)
        _write_pair(directory, "ca", *ca)
        issued.append("ca")
    ca_cert, ca_key = ca

    server = None if force else _load_pair(directory, "server", now)
    if server is None or not _issued_by(server[0], ca_cert) or not _client_capable(server[0]):
        server = _issue_server(ca_cert, ca_key, now)
        _write_pair(directory, "server", *server)
        issued.append("server")

    identities: dict[str, Identity] = {}
    stranger_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
    for name, kind in client_names(devices, aggregators):
        pair = None if force else _load_pair(directory, name, now)
        # Ours must be signed by the CA; the stranger must not be.
        wanted_issuer = pair is not None and _issued_by(pair[0], ca_cert) == (kind != "stranger")
        if pair is None or not wanted_issuer:
            if kind == "stranger":
                # Nobody keeps this CA: the stranger only needs to be signed by someone else.
                stranger_ca = stranger_ca or _issue_ca(STRANGER_CA_NAME, now)
                pair = _issue_client(name, *stranger_ca, now)
            else:
                pair = _issue_client(name, ca_cert, ca_key, now)
            _write_pair(directory, name, *pair)
            issued.append(name)
        identities[name] = _identity(directory, name, kind, *pair)

    identities_file = directory / IDENTITIES_FILE
    _write_if_changed(identities_file, _identities_json(directory, identities), secret=False)
    return Pki(
        directory=directory,
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        identities_file=identities_file,
        identities=identities,
        issued=tuple(issued),
    )


# Issuing


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue_ca(
    common_name: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    subject = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _leaf_builder(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    not_after: datetime,
    now: datetime,
    usages: tuple[x509.ObjectIdentifier, ...],
) -> x509.CertificateBuilder:
    """What server and client certificates share: EC P-256, ECDSA-capable, not a CA."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # digitalSignature for ECDHE-ECDSA, keyAgreement as 2030.5 device certificates carry.
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public_key(ca_cert)),
            critical=False,
        )
    )


def _issue_server(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    alternative_names = x509.SubjectAlternativeName(
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
    )
    certificate = (
        # clientAuth too: the server presents it when it POSTs notifications (mutual TLS).
        _leaf_builder(
            "localhost", key, ca_cert, now + SERVER_VALIDITY, now, (_SERVER_AUTH, _CLIENT_AUTH)
        )
        .add_extension(alternative_names, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def _issue_client(
    name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    certificate = _leaf_builder(
        name, key, ca_cert, ca_cert.not_valid_after_utc, now, (_CLIENT_AUTH,)
    ).sign(ca_key, hashes.SHA256())
    return certificate, key


_SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


# Loading and checking


def _ec_public_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError(f"not an EC certificate: {certificate.subject.rfc4514_string()}")
    return public_key


def _load_pair(
    directory: Path, name: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """A certificate and its key if both load, match, use P-256 and are still valid."""
    try:
        certificate = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / f"{name}.key").read_bytes(), password=None
        )
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    if _public_bytes(key.public_key()) != _public_bytes(certificate.public_key()):
        return None
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        return None
    return certificate, key


def _public_bytes(public_key: object) -> bytes:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return b""
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _client_capable(certificate: x509.Certificate) -> bool:
    """Whether a certificate may also act as a TLS client (notifications are mutual TLS)."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return _CLIENT_AUTH in usage


def _issued_by(certificate: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_self_signed_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca and _issued_by(certificate, certificate)


# Writing


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(
    directory: Path,
    name: str,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> None:
    _write_if_changed(directory / f"{name}.key", _key_pem(key), secret=True)
    _write_if_changed(directory / f"{name}.pem", _pem(certificate), secret=False)


def _write_if_changed(path: Path, content: bytes, *, secret: bool) -> None:
    """Write atomically (a crash leaves the old file or the new one), only if it differs.

    Skipping identical content keeps a reload free of side effects; secrets are 0600 from the
    moment they exist, never chmod-ed afterwards.
    """
    mode = 0o600 if secret else 0o644
    try:
        if path.read_bytes() == content and (not secret or path.stat().st_mode & 0o777 == mode):
            return
    except OSError:
        pass
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # O_CREAT's mode is masked by umask, and ignored if it exists
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _identity(
    directory: Path,
    name: str,
    kind: IdentityKind,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> Identity:
    bundle = directory / f"{name}.bundle.pem"
    # curl --cert and ssl.SSLContext.load_cert_chain both take certificate and key in one file.
    _write_if_changed(bundle, _pem(certificate) + _key_pem(key), secret=True)
    lfdi = lfdi_from_certificate(certificate.public_bytes(serialization.Encoding.DER))
    return Identity(
        name=name,
        kind=kind,
        cert=directory / f"{name}.pem",
        key=directory / f"{name}.key",
        bundle=bundle,
        lfdi=lfdi,
        sfdi=sfdi_from_lfdi(lfdi),
    )


def _identities_json(directory: Path, identities: dict[str, Identity]) -> bytes:
    document = {
        identity.name: {
            "cert": str(identity.cert.relative_to(directory)),
            "key": str(identity.key.relative_to(directory)),
            "bundle": str(identity.bundle.relative_to(directory)),
            "lfdi": identity.lfdi,
            "sfdi": identity.sfdi,
            "kind": identity.kind,
        }
        for identity in identities.values()
    }
    return (json.dumps(document, indent=2) + "\n").encode()


# The csip CLI


def describe(pki: Pki) -> str:
    """A readable summary: where the CA and server certificate are, then one line per client."""
    issued = ", ".join(pki.issued) if pki.issued else "nothing (all loaded)"
    lines = [
        f"PKI in {pki.directory}",
        f"  CA certificate:     {pki.ca_cert}   (trust this one)",
        f"  server certificate: {pki.server_cert}   (for {', '.join(SERVER_NAMES)})",
        f"  server key:         {pki.server_key}",
        f"  identities:         {pki.identities_file}",
        f"  issued now:         {issued}",
        "",
    ]
    rows = [("NAME", "KIND", "LFDI", "SFDI", "CERT")]
    rows += [
        (i.name, i.kind, i.lfdi, f"{i.sfdi:012d}", str(i.cert)) for i in pki.identities.values()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]))
    devices = pki.of_kind("device")
    if devices:
        lines.append("")
        lines.append(
            f"e.g. curl --cacert {pki.ca_cert} --cert {devices[0].bundle} https://127.0.0.1:PORT/dcap"
        )
    return "\n".join(lines)


def run_init(args: argparse.Namespace) -> int:
    """``csip pki init``: ensure the PKI and print its summary."""
    try:
        pki = ensure_pki(
            args.directory, devices=args.devices, aggregators=args.aggregators, force=args.force
        )
    except OSError as exc:
        print(f"csip pki init: {exc}", file=sys.stderr)
        return 2
    print(describe(pki))
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative: {value}")
    return value


def add_subparser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``csip pki init`` to the csip CLI's subcommands."""
    pki = commands.add_parser(
        "pki",
        help="development certificates (CA, server, devices, aggregators)",
        description="Manage a development PKI for running the gateway on one machine.",
    )
    actions = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="create (or load) the development PKI in a directory",
        description=(
            "Create a CA, a server certificate for 127.0.0.1 and localhost, device and "
            "aggregator client certificates and an untrusted 'stranger', then print each "
            "client's LFDI and SFDI. Existing valid files are kept (LFDIs stay the same); "
            "--force issues everything anew."
        ),
    )
    init.add_argument("--dir", dest="directory", type=Path, required=True, metavar="DIR")
    init.add_argument("--devices", type=_count, default=3, metavar="N", help="default 3")
    init.add_argument("--aggregators", type=_count, default=1, metavar="M", help="default 1")
    init.add_argument("--force", action="store_true", help="issue every certificate anew")
    init.set_defaults(handler=run_init)
