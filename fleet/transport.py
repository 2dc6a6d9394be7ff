"""HTTP for the simulated devices: who they are on the wire, conditional GETs, and timing.

Two ways to present a device's certificate:

- ``mtls``: real TLS with the device's own client certificate. Each device has its own
  ``SSLContext`` (Python loads a certificate only into a context), made on first use and kept
  in a bounded LRU (about 25 KB each). aiohttp pools connections by context, so a device's
  kept-alive connection is reused by that device only, as on a real network.
- ``proxy-header``: plain HTTP to a server behind a TLS-terminating proxy
  (``csip serve --behind-proxy --trusted-proxies 127.0.0.1``); every request carries the
  device's certificate, URL-encoded PEM, in ``X-Client-Cert`` as nginx's
  ``$ssl_client_escaped_cert`` would. One shared pool of connections serves every device: the
  way to simulate 100k devices without 100k TLS handshakes on one machine.

Every request is timed and counted in ``RequestStats`` under its kind (``GET DERControlList``)
and outcome (the status code, or ``timeout``, ``connect``, ``disconnected``, ``tls``). GETs are
conditional: the ETag a device last saw for a URL goes out as ``If-None-Match`` and a 304 has no
body to read or parse. Concurrency is bounded by the pool (``connections``) and by the number of
fleet workers, so memory does not grow with the number of devices.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from fleet.device import Device
from fleet.stats import RequestStats

SEP_XML = "application/sep+xml"
CSIP_CIPHER = "ECDHE-ECDSA-AES128-CCM8"  # CSIP's mandatory TLS 1.2 suite


# A PEM holds base64, dashes, spaces and line breaks: percent-encode the few of those that are
# not unreserved characters, exactly as ``quote(text, safe="")`` would, with five replaces
# (quote walks the text character by character: over a minute for 100k certificates).
_PEM_TEXT = re.compile(r"[A-Za-z0-9+/=\- \r\n]*")
_PEM_ESCAPES = (
    ("+", "%2B"),
    ("/", "%2F"),
    ("=", "%3D"),
    (" ", "%20"),
    ("\r", "%0D"),
    ("\n", "%0A"),
)


def escaped_certificate(pem: str) -> str:
    """A PEM certificate as nginx's ``$ssl_client_escaped_cert`` sends it (URL-encoded)."""
    if not _PEM_TEXT.fullmatch(pem):
        return quote(pem, safe="")
    for character, escape in _PEM_ESCAPES:
        pem = pem.replace(character, escape)
    return pem


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: ``status`` 0 when no HTTP answer did (``outcome`` says why)."""

    status: int
    outcome: str
    body: bytes | None
    location: str | None
    etag: str | None
    sent: float  # wall-clock time the request left (for Time samples)
    received: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Transport:
    def __init__(
        self,
        *,
        server: str,
        mode: str,
        stats: RequestStats,
        ca: Path | None = None,
        connections: int = 128,
        timeout: float = 30.0,
        header: str = "X-Client-Cert",
        csip_tls: bool = False,
        ssl_contexts: int = 20_000,
    ) -> None:
        if mode not in ("mtls", "proxy-header"):
            raise ValueError(f"unknown identity mode {mode!r}")
        if mode == "mtls" and ca is None:
            raise ValueError("mTLS needs the CA certificate that signed the server's")
        self.server = server.rstrip("/")
        self.mode = mode
        self.stats = stats
        self.ca = ca
        self.connections = connections
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.header = header
        self.csip_tls = csip_tls
        self._contexts: OrderedDict[int, ssl.SSLContext] = OrderedDict()
        self._context_limit = ssl_contexts
        self.contexts_made = 0
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            limit_per_host=0,
            keepalive_timeout=120,
            ttl_dns_cache=None,
            enable_cleanup_closed=self.mode == "mtls",
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            headers={"Accept": SEP_XML},
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- identity -----------------------------------------------------------------------------

    def _context(self, device: Device) -> ssl.SSLContext:
        context = self._contexts.get(device.index)
        if context is not None:
            self._contexts.move_to_end(device.index)
            return context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(self.ca))
        context.load_cert_chain(device.credential)
        if self.csip_tls:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(CSIP_CIPHER)
        self.contexts_made += 1
        self._contexts[device.index] = context
        if len(self._contexts) > self._context_limit:
            self._contexts.popitem(last=False)
        return context

    # -- requests -----------------------------------------------------------------------------

    def url(self, href: str) -> str:
        return href if href.startswith(("http://", "https://")) else self.server + href

    async def get(self, device: Device, href: str, resource: str) -> Reply:
        """A conditional GET: 200 with the body (its ETag remembered) or 304 without one."""
        headers = {}
        etag = device.etags.get(href)
        if etag is not None:
            headers["If-None-Match"] = etag
        reply = await self._request(device, "GET", href, resource, headers, None)
        if reply.status == 200:
            if reply.etag:
                device.etags[href] = reply.etag
            else:
                device.etags.pop(href, None)
        return reply

    async def send(
        self, device: Device, method: str, href: str, resource: str, body: bytes
    ) -> Reply:
        """A PUT or POST of a 2030.5 body; ``location`` is the Location header, if any."""
        return await self._request(device, method, href, resource, {"Content-Type": SEP_XML}, body)

    async def _request(
        self,
        device: Device,
        method: str,
        href: str,
        resource: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> Reply:
        assert self._session is not None, "start() the transport first"
        ssl_option: ssl.SSLContext | bool = True
        if self.mode == "mtls":
            ssl_option = self._context(device)
        else:
            headers[self.header] = device.credential
        kind = f"{method} {resource}"
        sent = time.time()
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, self.url(href), headers=headers, data=body, ssl=ssl_option
            ) as response:
                status = response.status
                # Read every body, even an error's: an unread body costs the connection.
                payload: bytes | None = await response.read()
                if status != 200 or method != "GET":
                    payload = None
                etag = response.headers.get("ETag")
                location = response.headers.get("Location")
        except TimeoutError:
            return self._failed(kind, "timeout", sent, started)
        except aiohttp.ClientSSLError:
            return self._failed(kind, "tls", sent, started)
        except aiohttp.ClientConnectorError:
            return self._failed(kind, "connect", sent, started)
        except aiohttp.ServerDisconnectedError:
            return self._failed(kind, "disconnected", sent, started)
        except (aiohttp.ClientError, OSError) as exc:
            return self._failed(kind, type(exc).__name__, sent, started)
        elapsed = time.perf_counter() - started
        self.stats.record(kind, str(status), elapsed)
        return Reply(status, str(status), payload, location, etag, sent, sent + elapsed)

    def _failed(self, kind: str, outcome: str, sent: float, started: float) -> Reply:
        elapsed = time.perf_counter() - started
        self.stats.record(kind, outcome, elapsed)
        return Reply(0, outcome, None, None, None, sent, sent + elapsed)


async def wait_closed(transport: Transport) -> None:
    """Close and let aiohttp's connections finish closing (it needs a loop turn)."""
    await transport.close()
    await asyncio.sleep(0)
