"""``csip serve``: the embedded runtime, the 2030.5 listener and the admin listener in one process.

Two uvicorn servers share one asyncio loop with the runtime: the device listener (HTTPS with
client certificates, or plain HTTP behind a trusted TLS-terminating proxy) and the admin listener
(plain HTTP, on loopback by default). SIGTERM or SIGINT stops both, then the runtime writes a
checkpoint; SIGKILL loses nothing that was acknowledged (the log is synced first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvicorn

from engine import compiled
from engine.notify import DeadLetter, Notifier, NotifyTls
from engine.runtime.embedded.runtime import EmbeddedRuntime
from engine.runtime.embedded.store import Store
from gateway import logs
from gateway.admin import build_admin_app, build_ops_app
from gateway.app import build_device_app
from gateway.context import Backend, GatewayContext, GatewaySettings
from gateway.fs.sub import SubscriptionWatcher
from gateway.http import RenderCache
from gateway.identity import parse_networks
from gateway.metrics import METRICS
from gateway.pki import Pki, ensure_pki
from gateway.replicas import TOKEN_ENV, Forward, Replicas, die_with_primary, reuse_port_socket
from gateway.tls import bound_port, make_server, no_signal_capture, server_ssl_context
from gateway.views import ASGIApp, ViewCache

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
    notify_test_mode: bool = False  # http notificationURIs on loopback allowed (tests only)
    idempotent: bool = True  # Kafka producers (the gateway): off for brokers without it
    view_cache: int = 1_000_000  # polls answered from materialized views (entries; 0: off)
    no_cache: bool = False  # the benchmark baseline: render every GET, no ETags, no 304s
    access_log: bool = True  # one structured line per request (logger csip.access)
    keep_alive: float = 5.0  # seconds an idle device connection stays open (uvicorn's default)
    processes: int = 1  # device-listener processes: the primary and processes-1 replicas
    pen: int | None = None  # IANA Private Enterprise Number: the tail of mRIDs we make up


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


def _settings(options: ServeOptions) -> GatewaySettings:
    return GatewaySettings(
        conditional=not options.no_cache,
        trusted_proxies=parse_networks(options.trusted_proxies),
        timezone=options.timezone,
        time_quality=options.time_quality,
        admin_token=admin_token(options),
        notify_test_mode=options.notify_test_mode,
        profile=options.profile,
        pen=options.pen,
    )


def _context(
    options: ServeOptions,
    backend: Backend,
    settings: GatewaySettings,
    notifier: NotifierAdmin | None = None,
) -> GatewayContext:
    """The gateway's context, with the view cache wired to the backend's change hooks."""
    cache = RenderCache(size=0) if options.no_cache else RenderCache()
    ctx = GatewayContext(backend, settings, cache=cache, notifier=notifier)
    if options.view_cache > 0 and not options.no_cache:
        views = ViewCache(ctx, size=options.view_cache)
        backend.on_change.append(views.changed)
        backend.reporting.on_write.append(views.reported)
        ctx.views = views
    return ctx


async def serve(options: ServeOptions) -> None:
    """The embedded runtime with both listeners and the notifier, in one process."""
    logs.configure(options.log_level, access=options.access_log)
    pki = ensure_pki(options.pki)
    runtime = EmbeddedRuntime(options.data, profile=options.profile)
    await runtime.start()
    if options.demo and not runtime.registry.programs:
        from gateway.demo import load_demo

        await load_demo(runtime, pki)
    settings = _settings(options)
    notifier = Notifier(
        options.data / "notify",
        tls=NotifyTls(pki.server_cert, pki.server_key, (pki.ca_cert,)),
        registry=METRICS.registry,
    )
    await notifier.start()
    ctx = _context(options, runtime, settings, notifier=NotifierAdmin(notifier))
    watcher = SubscriptionWatcher(
        ctx,
        notifier,
        **_last_sent_store(runtime.store),  # type: ignore[arg-type]
    )
    runtime.on_change.append(watcher.changed)
    try:
        if options.processes > 1:
            await _listen_with_replicas(options, pki, ctx, watcher)
        else:
            await _listen(options, pki, ctx, watcher)
    finally:
        await watcher.stop()
        await notifier.stop()
        await runtime.stop()
        log.info("stopped")


async def serve_gateway(options: ServeOptions, *, broker: str, prefix: str, shards: int) -> None:
    """A stateless gateway replica of the Kafka runtime (engine/runtime/kafka/backend.py)."""
    from engine.runtime.kafka.backend import KafkaBackend

    logs.configure(options.log_level, access=options.access_log)
    pki = ensure_pki(options.pki)
    backend = KafkaBackend(
        broker,
        options.data,
        prefix=prefix,
        shards=shards,
        profile=options.profile,
        idempotent=options.idempotent,
    )
    await backend.start()
    ctx = _context(options, backend, _settings(options))
    try:
        await _listen(options, pki, ctx, None)
    finally:
        await backend.stop()
        log.info("stopped")


async def serve_notifier(
    options: ServeOptions, *, broker: str, prefix: str, shards: int, public_url: str
) -> None:
    """The Kafka runtime's notifier: a replica of the command log, the subscription watcher, and
    durable delivery; health, readiness and metrics on the admin port."""
    from engine.runtime.kafka.backend import KafkaBackend

    logs.configure(options.log_level)
    pki = ensure_pki(options.pki)
    backend = KafkaBackend(
        broker,
        options.data / "replica",
        prefix=prefix,
        shards=shards,
        profile=options.profile,
        idempotent=options.idempotent,
    )
    await backend.start()
    notifier = Notifier(
        options.data / "notify",
        tls=NotifyTls(pki.server_cert, pki.server_key, (pki.ca_cert,)),
        registry=METRICS.registry,
    )
    await notifier.start()
    ctx = GatewayContext(backend, _settings(options), notifier=NotifierAdmin(notifier))
    ctx.public_url = public_url.rstrip("/")
    watcher = SubscriptionWatcher(
        ctx,
        notifier,
        baseline_new=True,
        **_last_sent_store(backend.store),  # type: ignore[arg-type]
    )
    backend.on_change.append(watcher.changed)
    server = make_server(
        build_admin_app(ctx),
        host=options.admin_host,
        port=options.admin_port,
        ssl_context=None,
        log_config=None,
        access_log=False,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
    loop.add_signal_handler(signal.SIGINT, lambda: setattr(server, "should_exit", True))
    server.capture_signals = no_signal_capture  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and options.ready_file is not None:
            options.ready_file.write_text(f"0 {bound_port(server)}\n")
        watcher.changed()
        await task
    finally:
        await watcher.stop()
        await notifier.stop()
        await backend.stop()
        log.info("stopped")


async def _listen(
    options: ServeOptions,
    pki: Pki,
    ctx: GatewayContext,
    watcher: SubscriptionWatcher | None,
    *,
    device_socket: socket.socket | None = None,
    internal: uvicorn.Server | None = None,
    replicas: Replicas | None = None,
) -> None:
    """Run the device and admin listeners (and the primary's internal listener and replicas,
    when given) until SIGTERM or SIGINT; replicas stop first."""
    device, admin = _device_and_side_servers(
        options, pki, build_device_app(ctx, watcher), build_admin_app(ctx)
    )
    servers = [device, admin] + ([internal] if internal is not None else [])
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    async def shutdown() -> None:
        if replicas is not None:
            await replicas.stop()
        for server in servers:
            server.should_exit = True

    def stop() -> None:
        if not stopping:
            stopping.append(asyncio.create_task(shutdown()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    for server in servers:
        server.capture_signals = no_signal_capture  # type: ignore[method-assign]
    tasks = [
        asyncio.create_task(device.serve(sockets=[device_socket] if device_socket else None)),
        *(asyncio.create_task(server.serve()) for server in servers[1:]),
    ]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        if all(server.started for server in servers):
            if replicas is not None:
                await replicas.start(options.data / "replicas")
            scheme = "http" if options.behind_proxy else "https"
            ctx.public_url = f"{scheme}://{options.host}:{bound_port(device)}"
            _announce(options, pki.directory, [device, admin], ctx.settings.admin_token)
            if watcher is not None:
                watcher.changed()  # catch up on anything that changed while we were down
        await asyncio.gather(*tasks)
    finally:
        if replicas is not None:
            await replicas.stop()
        for server in servers:
            server.should_exit = True
        logs.ACCESS.flush()


RUN_DIR_PREFIX = "csip-run-"
RUN_DIR_PID = "primary.pid"


def remove_stale_run_dirs(base: Path) -> list[Path]:
    """Remove the run directories (``RUN_DIR_PREFIX``*) of primaries that are gone: one that
    was killed (SIGKILL, OOM) could not remove its own. A directory without a readable pid
    file is left alone (not ours, or still being made); so is one whose primary runs."""
    removed = []
    for path in base.glob(RUN_DIR_PREFIX + "*"):
        try:
            pid = int((path / RUN_DIR_PID).read_text())
        except (OSError, ValueError):
            continue
        if _process_exists(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


async def _listen_with_replicas(
    options: ServeOptions, pki: Pki, ctx: GatewayContext, watcher: SubscriptionWatcher
) -> None:
    """The primary of ``--processes N``: its listeners, the internal listener replicas forward
    writes to (a Unix socket in a private directory), and the replicas (gateway.replicas)."""
    token = secrets.token_urlsafe(32)
    remove_stale_run_dirs(Path(tempfile.gettempdir()))
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))  # mode 0700: ours alone
    (run_dir / RUN_DIR_PID).write_text(f"{os.getpid()}\n")
    device_socket = reuse_port_socket(options.host, options.port)
    port = device_socket.getsockname()[1]
    internal_ctx = dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, replica_token=token), views=None
    )
    internal = make_server(
        build_device_app(internal_ctx, watcher),
        host="127.0.0.1",
        port=0,
        ssl_context=None,
        uds=str(run_dir / "primary.sock"),
        log_config=None,
        access_log=False,
    )

    def argv(index: int, ready: Path) -> list[str]:
        admin_port = options.admin_port + index if options.admin_port else 0
        trusted = bool(options.trusted_proxies)
        return [
            "serve-replica",
            *("--index", str(index), "--primary-socket", str(run_dir / "primary.sock")),
            *("--data", str(options.data), "--pki", str(options.pki)),
            *("--host", options.host, "--port", str(port)),
            *("--admin-host", options.admin_host, "--admin-port", str(admin_port)),
            *("--profile", options.profile, "--timezone", options.timezone),
            *("--time-quality", str(options.time_quality), "--log-level", options.log_level),
            *("--view-cache", str(options.view_cache), "--ready-file", str(ready)),
            *(("--behind-proxy",) if options.behind_proxy else ()),
            *(("--trusted-proxies", ",".join(options.trusted_proxies)) if trusted else ()),
            *(("--no-view-cache",) if options.no_cache else ()),
            *(("--no-access-log",) if not options.access_log else ()),
            *("--keep-alive", str(options.keep_alive)),
        ]

    replicas = Replicas(options.processes - 1, argv, token)
    try:
        await _listen(
            options,
            pki,
            ctx,
            watcher,
            device_socket=device_socket,
            internal=internal,
            replicas=replicas,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def serve_replica(options: ServeOptions, *, index: int, primary_socket: Path) -> None:
    """One replica of ``csip serve --processes N`` (started by the primary, never by hand)."""
    from engine.runtime.embedded.replica import ReplicaBackend

    logs.configure(options.log_level, access=options.access_log)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SystemExit(f"csip serve-replica: {TOKEN_ENV} is not set (the primary starts us)")
    pki = ensure_pki(options.pki)
    backend = ReplicaBackend(
        options.data, options.data / "replicas" / str(index), profile=options.profile
    )
    await backend.start()
    ctx = _context(options, backend, _settings(options))
    forwards: list[Forward] = []

    def forward(app: ASGIApp) -> ASGIApp:
        forwards.append(Forward(app, ctx, backend, primary_socket=primary_socket, token=token))
        return forwards[-1]

    device, ops = _device_and_side_servers(
        options, pki, build_device_app(ctx, None, wrap=forward), build_ops_app(ctx)
    )
    servers = [device, ops]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    for server in servers:
        server.capture_signals = no_signal_capture  # type: ignore[method-assign]
    orphan_watch = die_with_primary(stop)
    sock = reuse_port_socket(options.host, options.port)
    tasks = [asyncio.create_task(device.serve(sockets=[sock])), asyncio.create_task(ops.serve())]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        if all(server.started for server in servers):
            freeze_startup_heap()
            log.info(
                "replica serving",
                extra={"replica": index, "device_port": bound_port(device), "ops": bound_port(ops)},
            )
            if options.ready_file is not None:
                options.ready_file.write_text(f"{bound_port(device)} {bound_port(ops)}\n")
        await asyncio.gather(*tasks)
    finally:
        if orphan_watch is not None:
            orphan_watch.cancel()
        for server in servers:
            server.should_exit = True
        for layer in forwards:
            await layer.aclose()
        await backend.stop()
        logs.ACCESS.flush()
        log.info("replica stopped", extra={"replica": index})


class NotifierAdmin:
    """The notifier as the admin API shows it (JSON-ready dead letters and counts)."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def dead_letters(self, limit: int = 100) -> list[dict[str, object]]:
        return [_dead_letter(d) for d in self._notifier.dead_letters(limit=limit)]

    def drop_dead_letter(self, delivery_id: str) -> bool:
        return self._notifier.drop_dead_letter(delivery_id)

    def stats(self) -> dict[str, object]:
        return dict(asdict(self._notifier.stats()))


def _dead_letter(letter: DeadLetter) -> dict[str, object]:
    delivery = letter.delivery
    return {
        "id": delivery.id,
        "subscription": delivery.key,
        "uri": delivery.uri,
        "reason": letter.reason,
        "deadLettered": letter.dead_lettered,
        "created": delivery.created,
        "attempts": delivery.attempts,
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
        "body": delivery.body.decode("utf-8", "replace"),
    }


def _last_sent_store(store: Store) -> dict[str, object]:
    """Per subscription, the ETag and number of the last notification queued (rocksdict)."""
    prefix = b"N"

    def last_sent(subscription: int) -> tuple[str, int] | None:
        raw = store.get(prefix + subscription.to_bytes(8, "big"))
        if raw is None:
            return None
        etag, number = raw.decode().rsplit("|", 1)
        return etag, int(number)

    def remember(subscription: int, etag: str, number: int) -> None:
        store.write_views([(prefix + subscription.to_bytes(8, "big"), f"{etag}|{number}".encode())])

    return {"last_sent": last_sent, "remember": remember}


def _device_and_side_servers(
    options: ServeOptions, pki: Pki, device_app: ASGIApp, side_app: ASGIApp
) -> tuple[uvicorn.Server, uvicorn.Server]:
    """The device listener (mutual TLS, or plain HTTP behind a proxy) and the plain-HTTP admin
    or ops listener beside it."""
    ssl_context = (
        None
        if options.behind_proxy
        else server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert)
    )
    device = make_server(
        device_app,
        host=options.host,
        port=options.port,
        ssl_context=ssl_context,
        log_config=None,
        access_log=False,
        timeout_keep_alive=options.keep_alive,
    )
    side = make_server(
        side_app,
        host=options.admin_host,
        port=options.admin_port,
        ssl_context=None,
        log_config=None,
        access_log=False,
    )
    return device, side


def freeze_startup_heap() -> None:
    """Leave what start-up built (modules, FastAPI's routes, the recovered state) out of the
    cyclic garbage collector's passes. A full collection walks every tracked object: about
    40-50 ms with this server's imports alone, a stall every request in flight waits out (the
    p99 of an open-loop benchmark). Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


def _announce(
    options: ServeOptions, pki_dir: Path, servers: list[uvicorn.Server], token: str
) -> None:
    freeze_startup_heap()
    device_port, admin_port = bound_port(servers[0]), bound_port(servers[1])
    scheme = "http" if options.behind_proxy else "https"
    log.info(
        "serving",
        extra={
            "device_url": f"{scheme}://{options.host}:{device_port}",
            "admin_url": f"http://{options.admin_host}:{admin_port}/admin/docs",
            "profile": options.profile,
            "data": str(options.data),
            "kernel": compiled.kernel(),  # compiled (make compile, the image) or from source
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
