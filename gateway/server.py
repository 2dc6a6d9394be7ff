"""``csip serve``: the embedded runtime, the 2030.5 listener and the admin listener in one process.

Two uvicorn servers share one asyncio loop with the runtime: the device listener (HTTPS with
client certificates, or plain HTTP behind a trusted TLS-terminating proxy) and the admin listener
(plain HTTP, on loopback by default). SIGTERM or SIGINT stops both, then the runtime writes a
checkpoint; SIGKILL loses nothing that was acknowledged (the log is synced first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from engine.runtime.embedded.runtime import EmbeddedRuntime
from gateway import logs
from gateway.admin import build_admin_app
from gateway.app import build_device_app
from gateway.context import GatewayContext, GatewaySettings
from gateway.identity import parse_networks
from gateway.pki import ensure_pki
from gateway.tls import bound_port, make_server, server_ssl_context

log = logging.getLogger("csip.serve")


@dataclass
class ServeOptions:
    data: Path
    pki: Path
    host: str = "127.0.0.1"
    port: int = 8443
    admin_host: str = "127.0.0.1"
    admin_port: int = 8080
    profile: str = "csip"
    demo: bool = False
    behind_proxy: bool = False  # plain HTTP; identity from a trusted proxy's header
    trusted_proxies: list[str] = field(default_factory=list)
    timezone: str = "UTC"
    time_quality: int = 4
    admin_token: str | None = None
    log_level: str = "info"
    ready_file: Path | None = None  # written with the bound ports once serving (tests, scripts)


def admin_token(options: ServeOptions) -> str:
    """The admin token: given, from CSIP_ADMIN_TOKEN, or kept in the data directory."""
    token = options.admin_token or os.environ.get("CSIP_ADMIN_TOKEN")
    if token:
        return token
    path = options.data / "admin.token"
    if path.exists():
        return path.read_text().strip()
    options.data.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


@contextlib.contextmanager
def _no_signal_capture() -> Iterator[None]:
    yield


async def serve(options: ServeOptions) -> None:
    logs.configure(options.log_level)
    pki = ensure_pki(options.pki)
    runtime = EmbeddedRuntime(options.data, profile=options.profile)
    await runtime.start()
    if options.demo and not runtime.registry.programs:
        from gateway.demo import load_demo

        await load_demo(runtime, pki)
    settings = GatewaySettings(
        trusted_proxies=parse_networks(options.trusted_proxies),
        timezone=options.timezone,
        time_quality=options.time_quality,
        admin_token=admin_token(options),
    )
    ctx = GatewayContext(runtime, settings)
    ssl_context = (
        None
        if options.behind_proxy
        else server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert)
    )
    servers = [
        make_server(
            build_device_app(ctx),
            host=options.host,
            port=options.port,
            ssl_context=ssl_context,
            log_config=None,
            access_log=False,
        ),
        make_server(
            build_admin_app(ctx),
            host=options.admin_host,
            port=options.admin_port,
            ssl_context=None,
            log_config=None,
            access_log=False,
        ),
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    for server in servers:
        server.capture_signals = _no_signal_capture  # type: ignore[method-assign]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        if all(server.started for server in servers):
            _announce(options, pki.directory, servers, settings.admin_token)
        await asyncio.gather(*tasks)
    finally:
        stop()
        await runtime.stop()
        log.info("stopped")


def _announce(
    options: ServeOptions, pki_dir: Path, servers: list[uvicorn.Server], token: str
) -> None:
    device_port, admin_port = bound_port(servers[0]), bound_port(servers[1])
    scheme = "http" if options.behind_proxy else "https"
    log.info(
        "serving",
        extra={
            "device_url": f"{scheme}://{options.host}:{device_port}",
            "admin_url": f"http://{options.admin_host}:{admin_port}/admin/docs",
            "profile": options.profile,
            "data": str(options.data),
        },
    )
    if options.ready_file is not None:
        options.ready_file.write_text(f"{device_port} {admin_port}\n")
    print(
        f"""
csipstream is serving (IEEE 2030.5 on {scheme}://{options.host}:{device_port}).

  Talk to it as device1:
    curl --cacert {pki_dir}/ca.pem --cert {pki_dir}/device1.bundle.pem \\
         https://{options.host}:{device_port}/dcap

  Admin API (OpenAPI docs):  http://{options.admin_host}:{admin_port}/admin/docs
  Admin token:               {token}
    curl -H 'Authorization: Bearer {token}' http://{options.admin_host}:{admin_port}/admin/devices

  Health: /healthz /readyz   Metrics: /metrics   (admin listener)
""",
        flush=True,
    )
