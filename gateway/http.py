"""HTTP details shared by every 2030.5 route: XML responses with ETags, conditional GETs,
HEAD, list paging (s, a, l) and bounded, typed request bodies."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from inspect import signature
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree

from gateway import xmlio
from gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

T = TypeVar("T")

SEP_XML = "application/sep+xml"
VIEW_KEY = "csip.view"  # where a GET's answer is left for the view cache (gateway.views)
ACCEPTED_TYPES = ("application/sep+xml", "application/xml", "text/xml")


def fastapi_options() -> dict[str, Any]:
    """Options for every ``FastAPI()`` of ours. FastAPI >= 0.16x traces, meters and logs each
    request through OpenTelemetry and asks the global providers (the environment) on every
    request whether to: about a tenth of a poll's cost with no OpenTelemetry configured. Our
    metrics are Prometheus (``gateway.metrics``) and our logs ``csip.access``: turn it off."""
    if "telemetry" in signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def etag_of(body: bytes) -> str:
    return '"' + blake2b(body, digest_size=8).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered body and its ETag (computed once, served many times)."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, element: etree._Element) -> Rendered:
        body = xmlio.serialize(element)
        return cls(body, etag_of(body))


class RenderCache:
    """Rendered shared resources by key (resource and the versions it depends on), LRU."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._items: OrderedDict[object, Rendered] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: object, render: Callable[[], etree._Element]) -> Rendered:
        if self._size == 0:  # the no-cache baseline: render every time
            self.misses += 1
            return Rendered.of(render())
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        rendered = Rendered.of(render())
        self._items[key] = rendered
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return rendered


def xml_response(
    request: Request,
    rendered: Rendered | etree._Element,
    *,
    status: int = 200,
    keep: bool = True,
) -> Response:
    """The response to a GET or HEAD: 304 when the client's ETag matches.

    The answer is left in the request's scope for the view cache (``gateway.views``) unless
    ``keep`` is False (resources that change with every second, like /tm).
    """
    if not isinstance(rendered, Rendered):
        rendered = Rendered.of(rendered)
    if keep and status == 200 and VIEW_KEY in request.scope:
        request.scope[VIEW_KEY] = rendered
    conditional = request.app.state.context.settings.conditional
    headers = {"Cache-Control": "no-cache"}
    if conditional:
        headers["ETag"] = rendered.etag
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and etag_matches(if_none_match, rendered.etag):
            return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else rendered.body
    headers["Content-Length"] = str(len(rendered.body))
    return Response(body, status_code=status, media_type=SEP_XML, headers=headers)


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak or strong) or is ``*``."""
    candidates = [part.strip() for part in header.split(",")]
    return "*" in candidates or etag in candidates or f"W/{etag}" in candidates


@dataclass(frozen=True, slots=True)
class Paging:
    """2030.5 list query parameters: s (start index), a (after time), l (limit)."""

    start: int
    after: int
    limit: int

    def page(self, items: list[T]) -> list[T]:
        return items[self.start : self.start + self.limit]


def paging(request: Request, *, default_limit: int, max_limit: int) -> Paging:
    def number(name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {name} must be an integer") from None
        if value < 0:
            raise BadRequest(f"query parameter {name} must not be negative")
        return value

    return Paging(
        start=number("s", 0),
        after=number("a", 0),
        limit=min(number("l", default_limit), max_limit),
    )


async def read_xml(
    request: Request, *, expected_root: str | set[str], max_bytes: int
) -> etree._Element:
    """The request's body as parsed, hardened XML: 415, 413 or 400 with a reason otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'} is not accepted: send {SEP_XML}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    if not body:
        raise BadRequest("an XML body is required")
    return xmlio.parse(bytes(body), expected_root=expected_root)
