"""A thin client for csipstream's admin API (JSON over HTTP, bearer token; docs/server.md).

Every call answers the decoded JSON body, or raises ``AdminApiError`` carrying the method, the
path, the status and the server's own reason, so a failed admin instruction says exactly what
csipstream answered.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

ADMIN_URL_ENV = "CSIPSTREAM_ADMIN_URL"  # e.g. http://127.0.0.1:8080/admin
ADMIN_TOKEN_ENV = "CSIPSTREAM_ADMIN_TOKEN"


class AdminApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        super().__init__(f"{method} /admin{path} answered {status}: {_reason(body)}")


def _reason(body: str) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(decoded, dict):
        for key in ("detail", "reason", "error"):
            if key in decoded:
                return str(decoded[key])[:300]
    return body.strip()[:300]


def segment(value: str) -> str:
    """One URL path segment (LFDIs, program ids, mRIDs)."""
    return quote(value, safe="")


class AdminApi:
    """csipstream's admin API at ``base_url`` (ending in /admin) with ``token``."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> AdminApi:
        base_url = os.environ.get(ADMIN_URL_ENV, "")
        token = os.environ.get(ADMIN_TOKEN_ENV, "")
        if not base_url or not token:
            raise LookupError(
                f"set {ADMIN_URL_ENV} (e.g. http://127.0.0.1:8080/admin) and {ADMIN_TOKEN_ENV}"
            )
        return cls(base_url, token)

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method`` ``path`` (under /admin) with a JSON ``body``; 2xx answers the JSON."""
        await self.open()
        assert self._session is not None
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        async with self._session.request(method, self.base_url + path, **kwargs) as response:
            text = await response.text()
            logger.info("admin %s %s %s -> %s", method, path, _short(body), response.status)
            if not 200 <= response.status < 300:
                raise AdminApiError(method, path, response.status, text)
            return json.loads(text) if text else None

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def get_or_none(self, path: str) -> Any:
        """GET, with None for a 404."""
        try:
            return await self.get(path)
        except AdminApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def put(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, body)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)


def _short(body: Any) -> str:
    if body is None:
        return ""
    text = json.dumps(body, separators=(",", ":"))
    return text if len(text) <= 400 else text[:400] + "..."
