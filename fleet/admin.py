"""The fleet as the utility: the admin API calls that set a run up, issue its control, and read
the server's own view of each device afterwards.

Registration uses ``POST /admin/devices/batch`` (10,000 devices per request, one durable write
each) when the server's OpenAPI document lists it, and otherwise the per-device endpoints
(``POST /admin/devices`` then ``PUT /admin/devices/{lfdi}/fsas``), which every server has. Either
way a device already registered with the FSAs the layout gives it is left alone, so a second run
against the same server starts at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fleet.identities import FleetIdentity
from fleet.layout import Layout

BATCH_PATH = "/admin/devices/batch"
BATCH_LIMIT = 10_000
PER_DEVICE_CONCURRENCY = 32


class AdminError(RuntimeError):
    """The admin API refused or failed a call the run cannot do without."""


def find_token(token: str | None, data: Path | None) -> str | None:
    """The admin token: given, else ``CSIP_ADMIN_TOKEN``, else the server's ``admin.token``."""
    if token:
        return token
    if os.environ.get("CSIP_ADMIN_TOKEN"):
        return os.environ["CSIP_ADMIN_TOKEN"]
    if data is not None:
        path = Path(data) / "admin.token"
        if path.exists():
            return path.read_text().strip() or None
    return None


@dataclass
class Registration:
    mode: str = ""  # "batch" or "per-device"
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 2),
        }


class AdminClient:
    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        # A new connection per call: admin calls are minutes apart, longer than a server keeps
        # an idle connection (uvicorn: 5 s), and a call sent on one the server is closing
        # fails with "Server disconnected" (a POST must not be retried blindly).
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(force_close=True),
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, *, ok: Sequence[int] = (200, 201, 204)
    ) -> Any:
        """The JSON answer of an admin call; AdminError when the status is not in ``ok``."""
        try:
            async with self._session.request(method, self.url + path, json=body) as response:
                text = await response.text()
                if response.status not in ok:
                    raise AdminError(f"{method} {path}: {response.status} {text[:300]}")
                if not text:
                    return None
                if response.content_type == "application/json":
                    return await response.json(content_type=None)
                return text
        except aiohttp.ClientError as exc:
            raise AdminError(f"{method} {path}: {exc}") from exc

    async def has_batch(self) -> bool:
        document = await self.call("GET", "/admin/openapi.json")
        paths = document.get("paths", {}) if isinstance(document, dict) else {}
        return "post" in paths.get(BATCH_PATH, {})

    async def programs(self) -> dict[str, dict[str, Any]]:
        """Every program by id (with its mRID, the key the fleet's kernel knows it by)."""
        listed = await self.call("GET", "/admin/programs")
        return {program["program"]: program for program in listed}

    async def ensure_programs(self, layout: Layout, default: dict[str, Any] | None) -> int:
        """Create the layout's missing programs; put ``default`` on the first group's.
        Returns how many programs were created."""
        existing = await self.programs()
        created = 0
        for program, primacy, description in layout.programs():
            if program not in existing:
                body = {"primacy": primacy, "description": description}
                await self.call("PUT", f"/admin/programs/{program}", body)
                created += 1
        if default is not None:
            for program in layout.groups[0].programs():
                await self.call("PUT", f"/admin/programs/{program}/default", {"base": default})
        return created

    async def register(
        self,
        identities: Sequence[FleetIdentity],
        layout: Layout,
        progress: Callable[[int, int], None] | None = None,
    ) -> Registration:
        """Register the devices and give them the layout's FSAs, skipping those already so."""
        started = time.monotonic()
        report = Registration()
        existing = {d["lfdi"]: d for d in await self.call("GET", "/admin/devices")}
        todo: list[tuple[FleetIdentity, list[dict[str, Any]]]] = []
        for identity in identities:
            wanted = layout.fsas(identity.index)
            have = existing.get(identity.lfdi)
            if have is not None and _same_fsas(have.get("fsas", []), wanted):
                report.unchanged += 1
            else:
                todo.append((identity, wanted))
        if await self.has_batch():
            report.mode = "batch"
            await self._register_batches(todo, report, progress)
        else:
            report.mode = "per-device"
            await self._register_each(todo, existing, report, progress)
        report.seconds = time.monotonic() - started
        return report

    async def _register_batches(
        self,
        todo: list[tuple[FleetIdentity, list[dict[str, Any]]]],
        report: Registration,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        for start in range(0, len(todo), BATCH_LIMIT):
            chunk = todo[start : start + BATCH_LIMIT]
            body = {"devices": [{"lfdi": i.lfdi, "fsas": fsas} for i, fsas in chunk]}
            answer = await self.call("POST", BATCH_PATH, body)
            for result in answer["results"]:
                status = int(result["status"])
                if status == 201:
                    report.created += 1
                elif status == 200:
                    report.updated += 1
                else:
                    report.failed += 1
                    report.errors[f"{status} {result.get('error', '')}".strip()] += 1
            if progress is not None:
                progress(min(start + BATCH_LIMIT, len(todo)), len(todo))

    async def _register_each(
        self,
        todo: list[tuple[FleetIdentity, list[dict[str, Any]]]],
        existing: dict[str, Any],
        report: Registration,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        limit = asyncio.Semaphore(PER_DEVICE_CONCURRENCY)
        done = 0

        async def one(identity: FleetIdentity, fsas: list[dict[str, Any]]) -> None:
            nonlocal done
            async with limit:
                try:
                    if identity.lfdi not in existing:
                        await self.call("POST", "/admin/devices", {"lfdi": identity.lfdi})
                    await self.call("PUT", f"/admin/devices/{identity.lfdi}/fsas", fsas)
                except AdminError as exc:
                    report.failed += 1
                    report.errors[str(exc).split(": ", 1)[-1][:120]] += 1
                else:
                    if identity.lfdi in existing:
                        report.updated += 1
                    else:
                        report.created += 1
                done += 1
                if progress is not None and done % 1000 == 0:
                    progress(done, len(todo))

        await asyncio.gather(*(one(identity, fsas) for identity, fsas in todo))

    async def create_control(self, program: str, body: dict[str, Any]) -> str:
        answer = await self.call("POST", f"/admin/programs/{program}/controls", body)
        return str(answer["mRIDs"][0]).upper()

    async def responses(self, lfdi: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/admin/devices/{lfdi}/responses")
        return result

    async def effective(self, lfdi: str, at: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/admin/devices/{lfdi}/effective?at={at}")
        return result


def _same_fsas(have: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    return [(f.get("description"), list(f.get("programs", []))) for f in have] == [
        (f["description"], list(f["programs"])) for f in wanted
    ]
