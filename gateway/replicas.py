"""``csip serve --processes N``: the device listener on N processes, one of them the writer.

Theory of operation. Python runs one core per process, and a CSIP server's load is reads
(polls). The primary process is ``csip serve`` as always: the embedded runtime, the admin API,
the notifier, and a device listener. With ``--processes N`` it also starts N-1 replica
processes (``csip serve-replica``, never started by hand) that:

- listen on the same device port: every process binds it with SO_REUSEPORT, so the kernel
  spreads new connections over them;
- answer GETs from their own fold of the primary's data directory
  (``engine.runtime.embedded.replica``), with their own view cache;
- forward every other request (the writes) to the primary over a Unix socket in a private
  directory, with the client's certificate in a header and a per-run token that proves the
  request comes from a replica (``Forward``); the primary's internal listener believes that
  header only with the token. The answer is relayed once the replica has caught up with the
  write, so a client reads its own writes on any process.

The primary supervises its replicas (``Replicas``): one that exits is started again after a
pause; SIGTERM stops them before the primary. A replica never outlives its primary (killed
with SIGKILL, say): the kernel sends it SIGTERM when the primary dies (Linux), and it checks
its parent every second everywhere (``die_with_primary``), so no orphan keeps answering on the
shared port. Each replica has its own health, readiness and
metrics listener (``--admin-port`` + index, or an ephemeral port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from gateway.errors import (
    INVALID_FORMAT,
    INVALID_VALUES,
    RESOURCE_LIMIT,
    accepts_sep,
    error_body,
)
from gateway.identity import (
    REPLICA_CERT_HEADER,
    REPLICA_TOKEN_HEADER,
    IdentityError,
    identity_from_scope,
)

if TYPE_CHECKING:
    from engine.runtime.embedded.replica import ReplicaBackend
    from gateway.context import GatewayContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("csip.replicas")

TOKEN_ENV = "CSIP_REPLICA_TOKEN"
PRIMARY_ENV = "CSIP_PRIMARY_PID"
# Not relayed: they describe the hop, not the answer (the ASGI server sets its own).
_HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date"}
_HOP_HEADERS |= {b"server"}


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes of this user may bind too (SO_REUSEPORT):
    the kernel spreads incoming connections over all of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Forward:
    """Replica side: GET and HEAD to the routes here, everything else to the primary."""

    def __init__(
        self,
        app: ASGIApp,
        ctx: GatewayContext,
        backend: ReplicaBackend,
        *,
        primary_socket: Path,
        token: str,
        timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.backend = backend
        self.token = token
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(primary_socket)),
            base_url="http://primary",
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        settings = self.ctx.settings
        try:
            identity = identity_from_scope(
                scope, trusted_proxies=settings.trusted_proxies, proxy_header=settings.proxy_header
            )
        except IdentityError as exc:
            reason = f"client certificate refused: {exc}"
            await _error(scope, send, 403, reason, INVALID_VALUES)
            return
        body = await _body(receive, settings.max_body)
        if body is None:
            reason = f"the body is larger than {settings.max_body} bytes"
            await _error(scope, send, 413, reason, INVALID_FORMAT)
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in _HOP_HEADERS and not name.startswith(b"x-csip-") and name != b"host"
        ]
        headers.append((REPLICA_TOKEN_HEADER, self.token))
        if identity is not None:
            pem = ssl.DER_cert_to_PEM_cert(identity.certificate_der)
            headers.append((REPLICA_CERT_HEADER, quote(pem, safe="")))
        target = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        try:
            answer = await self.client.request(
                scope["method"], target, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            log.warning("the primary did not answer a forwarded write", extra={"error": str(exc)})
            reason = "the server is restarting; try again"
            await _error(scope, send, 503, reason, RESOURCE_LIMIT, retry_after=5)
            return
        answered = time.perf_counter()
        if self.backend.caught_up_at < answered:  # no catch-up has begun since: read our write
            self.backend.catch_up()
        relayed = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers.multi_items()
            if name.encode("latin-1") not in _HOP_HEADERS
        ]
        relayed.append((b"content-length", str(len(answer.content)).encode()))
        await send(
            {"type": "http.response.start", "status": answer.status_code, "headers": relayed}
        )
        await send({"type": "http.response.body", "body": answer.content})


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _error(
    scope: Scope,
    send: Send,
    status: int,
    reason: str,
    reason_code: int,
    *,
    retry_after: int | None = None,
) -> None:
    """The answer the routes' error handler would give (a 2030.5 Error or plain text)."""
    accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
    body, headers = error_body(reason, reason_code, retry_after, sep=accepts_sep(accept))
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def die_with_primary(stop: Callable[[], None]) -> asyncio.Task[None] | None:
    """In a replica: call ``stop`` when the primary that started it is gone.

    On Linux the kernel signals us (``PR_SET_PDEATHSIG``: SIGTERM, which the replica's handler
    turns into ``stop``) the moment the primary dies; the returned task also compares our
    parent with the primary's pid every second (other systems, and the race where the primary
    died before the prctl). None when no primary started us."""
    primary = os.environ.get(PRIMARY_ENV)
    if not primary:
        return None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    async def watch() -> None:
        while os.getppid() == int(primary):
            await asyncio.sleep(1.0)
        log.error("the primary is gone; stopping", extra={"primary": int(primary)})
        stop()

    return asyncio.create_task(watch())


class Replicas:
    """Primary side: start, watch and stop the replica processes."""

    def __init__(self, count: int, argv: Callable[[int, Path], list[str]], token: str) -> None:
        self.count = count
        self._argv = argv
        self._token = token
        self._run_dir = Path()
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.ready_files: dict[int, Path] = {}
        self.restarts = 0

    async def start(self, run_dir: Path, timeout: float = 60.0) -> None:
        """Start every replica and wait until each serves (its ready file, in ``run_dir``,
        says ``device_port ops_port``)."""
        self._run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        for index in range(1, self.count + 1):
            await self._spawn(index)
        deadline = time.monotonic() + timeout
        for index in range(1, self.count + 1):
            while not self.ready_files[index].exists():
                process = self._processes[index]
                if process.returncode is not None:
                    raise RuntimeError(f"replica {index} exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {index} did not start in {timeout:.0f} s")
                await asyncio.sleep(0.05)
        self._watchers = [
            asyncio.create_task(self._watch(index)) for index in range(1, self.count + 1)
        ]

    def ports(self) -> dict[int, str]:
        """Each replica's ``device_port ops_port`` as its ready file says."""
        return {i: f.read_text().strip() for i, f in self.ready_files.items() if f.exists()}

    async def _spawn(self, index: int) -> None:
        ready = self._run_dir / f"replica-{index}.ready"
        ready.unlink(missing_ok=True)
        self.ready_files[index] = ready
        env = {**os.environ, TOKEN_ENV: self._token, PRIMARY_ENV: str(os.getpid())}
        self._processes[index] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "csip", *self._argv(index, ready), env=env
        )
        log.info("replica started", extra={"replica": index, "pid": self._processes[index].pid})

    async def _watch(self, index: int) -> None:
        pause = 1.0
        while not self._stopping:
            code = await self._processes[index].wait()
            if self._stopping:
                return
            log.error("replica exited; starting it again", extra={"replica": index, "code": code})
            self.restarts += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            if not self._stopping:
                await self._spawn(index)

    async def stop(self, timeout: float = 15.0) -> None:
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for index, process in self._processes.items():
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                log.error("replica did not stop; killing it", extra={"replica": index})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
