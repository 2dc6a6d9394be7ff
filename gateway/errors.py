"""Errors the gateway answers with, and the one handler that maps them to HTTP.

Routes raise; they never build error responses themselves (STYLE: one exception handler, no
try/except in every route). The body is a short plain-text reason a client can read.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response

from engine.state.errors import Rejected
from engine.state.errors import Unavailable as LogUnavailable
from gateway.xmlio import XmlRejected

log = logging.getLogger("csip.gateway")


class HttpProblem(Exception):
    status = 500

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


class UnsupportedMediaType(HttpProblem):
    status = 415


class Unavailable(HttpProblem):
    status = 503


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(reason + "\n", status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpProblem)
        return _text(exc.status, exc.reason, exc.headers)

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Rejected)
        return _text(exc.status, exc.reason)

    async def bad_xml(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, XmlRejected)
        return _text(400, f"rejected XML: {exc.reason}")

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(error.get("loc", ("",))[0] == "path" for error in errors):
            return _text(404, "no such resource")  # /edev/abc names nothing
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _text(400, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LogUnavailable)
        return _text(503, exc.reason, {"Retry-After": str(exc.retry_after)})

    app.add_exception_handler(HttpProblem, problem)
    app.add_exception_handler(LogUnavailable, unavailable)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Rejected, rejected)
    app.add_exception_handler(XmlRejected, bad_xml)
