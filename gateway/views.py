"""Materialized views of what each client GETs: a poll is a dictionary lookup.

Theory of operation. A CSIP fleet mostly polls: every device asks for the same handful of
resources every few minutes, and nearly always nothing has changed. The routes (FastAPI, in
``gateway/fs``) already render shared resources once per state (``RenderCache``), but every
request still pays for routing, dependency resolution, authorization and the cache key. This
module answers a repeated GET without any of it:

- After the routes answer a GET with 200 or 304, the rendered body and its ETag are kept under
  the requester's LFDI and the request's path and query (what the requester saw, so the
  routes' authorization is part of it), with a *stamp*: the view generations it was rendered
  under and the instant until which time alone cannot change it.
- The next GET or HEAD of the same URL by the same client is answered from that entry, 304 if
  its If-None-Match matches, 200 with the kept body otherwise, if the stamp is still current.

What makes an entry stale, and how it is noticed:

- Anything the registry or the engine changes (a command, an event starting or ending): the
  backend's change hook bumps the *global* generation, so every entry is re-rendered once, on
  its next request. Writes by the operator are rare next to polls; one re-render per entry per
  change is what the RenderCache would have cost anyway.
- What a device reports (status, readings, responses, log events) changes only the views of
  that device and of the aggregator that manages it: the reporting hook bumps *their*
  generations. A fleet posting telemetry does not invalidate anybody else's polls.
- Time: control lists and statuses change when events start, are superseded or end. Each entry
  is valid until the catalog's next such instant (``horizon``), whether or not the runtime's
  timer has fired yet.
- ``/tm`` is never kept: it is different every second.

Correctness does not depend on the entries: a miss, or a full cache, only costs a render.
Memory is bounded by an LRU of ``size`` entries; shared bodies are one object for all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from gateway import uris
from gateway.context import GatewayContext
from gateway.http import SEP_XML, VIEW_KEY, Rendered, etag_matches
from gateway.identity import IdentityError, identity_from_scope
from gateway.logs import ACCESS
from gateway.metrics import METRICS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NEVER = 2**62


@dataclass(frozen=True, slots=True)
class Stamp:
    """The state a view was rendered in: valid while all three still hold."""

    generation: int  # of the registry and engine
    client: int  # of what the requester's own devices reported
    until: int  # the instant time alone changes what was rendered


@dataclass(frozen=True, slots=True)
class _Entry:
    rendered: Rendered
    stamp: Stamp
    route: str


class ViewCache:
    """Rendered GET answers per (client, URL), with the stamps that say when they are stale."""

    def __init__(self, ctx: GatewayContext, *, size: int = 1_000_000) -> None:
        self.ctx = ctx
        self.size = size
        self.generation = 0
        self._clients: dict[str, int] = {}
        self._entries: OrderedDict[tuple[str, str, bytes], _Entry] = OrderedDict()
        self._horizon: tuple[int, int, int] | None = None  # (catalog version, from, until)
        self.hits = 0
        self.misses = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- invalidation -------------------------------------------------------------------------

    def changed(self) -> None:
        """The registry or the engine changed: every view may have (the backend's hook)."""
        self.generation += 1

    def reported(self, lfdi: str) -> None:
        """A device's reports changed: its views, and its aggregator's, may have."""
        registry = self.ctx.registry
        for viewer in {lfdi.upper(), *registry.managers_of(lfdi)}:
            self._clients[viewer] = self._clients.get(viewer, 0) + 1

    # -- stamps -------------------------------------------------------------------------------

    def stamp(self, lfdi: str, now: int) -> Stamp:
        return Stamp(self.generation, self._clients.get(lfdi, 0), self._until(now))

    def _until(self, now: int) -> int:
        """The next instant after ``now`` at which time alone changes a rendered view."""
        catalog = self.ctx.catalog
        known = self._horizon
        if known is not None and known[0] == catalog.version and known[1] <= now < known[2]:
            return known[2]
        until = catalog.next_view_change(now)
        self._horizon = (catalog.version, now, NEVER if until is None else until)
        return self._horizon[2]

    def current(self, stamp: Stamp, lfdi: str, now: int) -> bool:
        return (
            stamp.generation == self.generation
            and stamp.client == self._clients.get(lfdi, 0)
            and now < stamp.until
        )

    # -- entries ------------------------------------------------------------------------------

    def get(self, lfdi: str, path: str, query: bytes, now: int) -> _Entry | None:
        key = (lfdi, path, query)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if not self.current(entry.stamp, lfdi, now):
            del self._entries[key]
            self.stale += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(
        self, lfdi: str, path: str, query: bytes, rendered: Rendered, stamp: Stamp, route: str
    ) -> None:
        self._entries[(lfdi, path, query)] = _Entry(rendered, stamp, route)
        self._entries.move_to_end((lfdi, path, query))
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


class Front:
    """A listener's outermost ASGI layer: answers repeated GETs from the ``ViewCache`` (when
    given one), sends everything else to the routes, and counts, times and logs every request
    (one structured access-log line each)."""

    def __init__(
        self, app: ASGIApp, ctx: GatewayContext, views: ViewCache | None, *, listener: str
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.views = views
        self.listener = listener
        self._access = ACCESS.enabled  # fixed when the listener is built, after logs.configure
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        views = self.views
        lfdi: str | None = None
        if views is not None and method in ("GET", "HEAD") and scope["path"] != uris.TIME:
            lfdi = self._lfdi(scope)
            if lfdi is not None:
                now = self.ctx.backend.now()
                entry = views.get(lfdi, scope["path"], scope["query_string"], now)
                if entry is not None:
                    status = await _send_view(scope, send, entry.rendered)
                    self._done(scope, entry.route, status, lfdi, started)
                    return
                scope[VIEW_KEY] = None
                stamp = views.stamp(lfdi, now)
        status_box = [500]

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            rendered = scope.get(VIEW_KEY)
            if lfdi is not None and isinstance(rendered, Rendered) and views is not None:
                views.put(lfdi, scope["path"], scope["query_string"], rendered, stamp, route)
            state = scope.get("state") or {}
            self._done(scope, route, status_box[0], state.get("lfdi", lfdi), started)

    def _lfdi(self, scope: Scope) -> str | None:
        settings = self.ctx.settings
        try:
            identity = identity_from_scope(
                scope, trusted_proxies=settings.trusted_proxies, proxy_header=settings.proxy_header
            )
        except IdentityError:
            return None  # the routes answer 403 with the reason
        return None if identity is None else identity.lfdi

    def _done(self, scope: Scope, route: str, status: int, lfdi: str | None, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        method = scope["method"]
        children = self._children.get((method, route, status))
        if children is None:
            children = (
                METRICS.requests.labels(self.listener, method, route, str(status)),
                METRICS.latency.labels(self.listener, route),
            )
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(elapsed)
        if self._access:
            ACCESS.request(
                listener=self.listener,
                method=method,
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 2),
                lfdi=lfdi,
            )


async def _send_view(scope: Scope, send: Send, rendered: Rendered) -> int:
    """The answer ``xml_response`` would give for this view (304, HEAD or 200)."""
    if_none_match = None
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            if_none_match = value.decode("latin-1")
            break
    etag = rendered.etag.encode()
    if if_none_match is not None and etag_matches(if_none_match, rendered.etag):
        await send(
            {
                "type": "http.response.start",
                "status": 304,
                "headers": [(b"etag", etag), (b"cache-control", b"no-cache")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return 304
    headers = [
        (b"etag", etag),
        (b"cache-control", b"no-cache"),
        (b"content-type", _CONTENT_TYPE),
        (b"content-length", str(len(rendered.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else rendered.body
    await send({"type": "http.response.body", "body": body})
    return 200


_CONTENT_TYPE = SEP_XML.encode()
