"""One client certificate per simulated device, issued by the development CA and kept on disk.

A device is its certificate: the server knows it by the LFDI, a hash of the certificate
(CSIP_RULES §7), so a fleet must keep its certificates to be the same devices from one run to the
next. The first run issues them with the CA of the PKI directory (``csip pki init``, or what
``csip serve`` created) and stores them under ``<pki>/fleet/``:

    identities.jsonl       line 1: {"ca": <SHA-256 of the CA>}; then one line per device,
                           {"name", "lfdi", "cert", "key"} (PEM), in index order (0600)
    bundles/NAME.pem       certificate and key in one file, for TLS (0600; mTLS mode only)

Later runs load them (100k devices in a second or two) and issue only what is missing; a new CA
makes every certificate stale, so they are all issued again. Issuing costs about a quarter of a
millisecond per certificate (EC P-256), spread over every core for large fleets.

The certificates are exactly the ones ``gateway/pki.py`` issues to its devices (the same
profile, by the same function); only the storage differs, because 100k devices would be 300k
files and a slow ``ensure_pki``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.kernel.identity import lfdi_from_certificate

# gateway.pki's issuing function: the same certificate profile as the PKI's own devices.
from gateway.pki import _issue_client

IDENTITIES_FILE = "identities.jsonl"
BUNDLES = "bundles"
PARALLEL_FROM = 2000  # below this, starting worker processes costs more than it saves
CHUNK = 1000

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True, slots=True)
class FleetIdentity:
    """A simulated device's certificate; ``bundle`` is its cert+key file (mTLS mode only)."""

    index: int
    name: str
    lfdi: str
    certificate: str  # PEM
    bundle: Path | None


def device_name(index: int) -> str:
    return f"fleet-{index + 1:06d}"


def fleet_directory(pki_dir: Path) -> Path:
    return Path(pki_dir) / "fleet"


def ensure_identities(
    pki_dir: Path,
    count: int,
    *,
    directory: Path | None = None,
    bundles: bool = False,
    progress: Progress | None = None,
) -> list[FleetIdentity]:
    """The first ``count`` fleet identities, issuing (and storing) whatever is missing.

    ``bundles`` also writes each device's cert+key file, for TLS clients that load files.
    Raises ``FileNotFoundError`` when the PKI directory has no CA.
    """
    if count < 0:
        raise ValueError("the number of devices cannot be negative")
    ca_cert, ca_key = _load_ca(Path(pki_dir))
    fingerprint = hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    where = directory or fleet_directory(pki_dir)
    where.mkdir(parents=True, exist_ok=True)
    store = where / IDENTITIES_FILE
    records = _load(store, fingerprint)
    if len(records) < count:
        records.extend(_issue(ca_cert, ca_key, len(records), count, progress))
        _save(store, fingerprint, records)
    identities = []
    bundle_dir = where / BUNDLES
    if bundles:
        bundle_dir.mkdir(exist_ok=True)
    for index, record in enumerate(records[:count]):
        bundle = None
        if bundles:
            bundle = bundle_dir / f"{record['name']}.pem"
            content = (record["cert"] + record["key"]).encode()
            if not bundle.exists() or bundle.read_bytes() != content:
                _write_secret(bundle, content)
        identities.append(
            FleetIdentity(index, record["name"], record["lfdi"], record["cert"], bundle)
        )
    return identities


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = pki_dir / "ca.pem", pki_dir / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise FileNotFoundError(
            f"no development CA in {pki_dir}: run `csip pki init --dir {pki_dir}` "
            "(or start `csip serve --pki` on it once)"
        )
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return certificate, key


def _load(store: Path, fingerprint: str) -> list[dict[str, str]]:
    """Stored records issued by this CA; [] when there are none or the CA changed. A torn
    last line (an interrupted write) ends the list."""
    try:
        lines = store.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    if not lines:
        return []
    try:
        header = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        return []
    if header.get("ca") != fingerprint:
        return []
    records: list[dict[str, str]] = []
    for line in lines[1:]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            break
        if record.get("name") != device_name(len(records)):
            break
        records.append(record)
    return records


def _save(store: Path, fingerprint: str, records: list[dict[str, str]]) -> None:
    lines = [orjson.dumps({"ca": fingerprint})]
    lines.extend(orjson.dumps(record) for record in records)
    _write_secret(store, b"\n".join(lines) + b"\n")


def _write_secret(path: Path, content: bytes) -> None:
    """Atomically, 0600 from the start (keys are inside)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    start: int,
    stop: int,
    progress: Progress | None,
) -> list[dict[str, str]]:
    total = stop - start
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chunks = [(ca_pem, key_pem, i, min(i + CHUNK, stop)) for i in range(start, stop, CHUNK)]
    out: list[dict[str, str]] = []
    if total < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        results: Iterator[list[dict[str, str]]] = map(_issue_chunk, chunks)
        for chunk in results:
            out.extend(chunk)
            if progress is not None:
                progress(len(out), total)
        return out
    # spawn, not fork: the caller may already run an event loop and threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=context) as pool:
        for chunk in pool.map(_issue_chunk, chunks):
            out.extend(chunk)
            if progress is not None:
                progress(len(out), total)
    return out


def _issue_chunk(job: tuple[bytes, bytes, int, int]) -> list[dict[str, str]]:
    ca_pem, key_pem, start, stop = job
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    records = []
    for index in range(start, stop):
        name = device_name(index)
        certificate, key = _issue_client(name, ca_cert, ca_key, now)
        records.append(
            {
                "name": name,
                "lfdi": lfdi_from_certificate(certificate.public_bytes(serialization.Encoding.DER)),
                "cert": certificate.public_bytes(serialization.Encoding.PEM).decode(),
                "key": key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
            }
        )
    return records
