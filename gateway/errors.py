"""Errors the gateway answers with, and the one handler that maps them to HTTP.

Routes raise; they never build error responses themselves (STYLE: one exception handler, no
try/except in every route).

What the body is: on the device listener, a client that accepts ``application/sep+xml`` (every
2030.5 client does) gets an IEEE 2030.5 ``Error`` (its ``reasonCode``, and ``maxRetryDuration``
when the client should come back later); anyone else (curl, the admin API) gets the reason as
short plain text. Either way the reason is also in the ``X-Csip-Reason`` header, since
``Error`` has no room for one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.state.errors import Rejected
from engine.state.errors import Unavailable as LogUnavailable
from gateway.xmlio import XmlRejected

log = logging.getLogger("csip.gateway")


# IEEE 2030.5 Error.reasonCode
INVALID_FORMAT = 0  # the request cannot be read (XML, media type, size)
INVALID_VALUES = 1  # read, but refused for what it says or asks for
RESOURCE_LIMIT = 2  # the server cannot take it now
REASON_HEADER = "X-Csip-Reason"
SEP_XML = "application/sep+xml"


class HttpProblem(Exception):
    status = 500
    reason_code = INVALID_VALUES

    def __init__(self, reason: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers or {}


class BadRequest(HttpProblem):
    status = 400


class Forbidden(HttpProblem):
    status = 403


class NotFound(HttpProblem):
    status = 404


class Conflict(HttpProblem):
    status = 409


class PayloadTooLarge(HttpProblem):
    status = 413
    reason_code = INVALID_FORMAT


class UnsupportedMediaType(HttpProblem):
    status = 415
    reason_code = INVALID_FORMAT


class NotServedHere(HttpProblem):
    """A resource this deployment does not serve (501), with where to get it instead."""

    status = 501


class Unavailable(HttpProblem):
    status = 503
    reason_code = RESOURCE_LIMIT


def accepts_sep(accept: str | None) -> bool:
    """Whether an Accept header asks for 2030.5 XML (``*/*`` alone does not)."""
    return accept is not None and SEP_XML in accept.lower()


def error_body(
    reason: str, reason_code: int, retry_after: int | None, *, sep: bool
) -> tuple[bytes, list[tuple[str, str]]]:
    """(body, headers) of an error answer: a 2030.5 Error when ``sep``, else plain text."""
    headers = [(REASON_HEADER, _header_safe(reason))]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    if not sep:
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
        return (reason + "\n").encode(), headers
    retry = "" if retry_after is None else f"<maxRetryDuration>{retry_after}</maxRetryDuration>"
    body = (
        f'<Error xmlns="urn:ieee:std:2030.5:ns">{retry}<reasonCode>{reason_code}</reasonCode>'
        "</Error>"
    )
    headers.append(("Content-Type", SEP_XML))
    return body.encode(), headers


def _header_safe(reason: str) -> str:
    """Printable ASCII, one line, at most 200 characters (a header value)."""
    text = reason.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if " " <= c <= "~" else " " for c in text)
    return text[:200]


def install_error_handlers(app: FastAPI, *, sep_errors: bool = False) -> None:
    """``sep_errors``: answer 2030.5 clients with an IEEE 2030.5 Error (the device listener)."""

    def answer(
        request: Request,
        status: int,
        reason: str,
        reason_code: int = INVALID_VALUES,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        extra = dict(headers or {})
        retry = extra.pop("Retry-After", None)
        body, own = error_body(
            reason,
            reason_code,
            None if retry is None else int(retry),
            sep=sep_errors and accepts_sep(request.headers.get("accept")),
        )
        merged = dict(own)
        merged.update(extra)
        media = merged.pop("Content-Type")
        return Response(body, status_code=status, headers=merged, media_type=media)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpProblem)
        return answer(request, exc.status, exc.reason, exc.reason_code, exc.headers)

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Rejected)
        return answer(request, exc.status, exc.reason)

    async def bad_xml(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, XmlRejected)
        return answer(request, 400, f"rejected XML: {exc.reason}", INVALID_FORMAT)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: "no such resource", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return answer(request, exc.status_code, reason, INVALID_VALUES, exc.headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(error.get("loc", ("",))[0] == "path" for error in errors):
            return answer(request, 404, "no such resource")  # /edev/abc names nothing
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        reason = f"invalid request: {where}: {first.get('msg', 'invalid')}"
        return answer(request, 400, reason, INVALID_FORMAT)

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LogUnavailable)
        headers = {"Retry-After": str(exc.retry_after)}
        return answer(request, 503, exc.reason, RESOURCE_LIMIT, headers)

    app.add_exception_handler(HttpProblem, problem)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(LogUnavailable, unavailable)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Rejected, rejected)
    app.add_exception_handler(XmlRejected, bad_xml)
