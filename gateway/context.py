"""What every route needs: the backend it reads and writes, the settings, and who is asking.

The gateway knows the engine only through ``Backend``: the embedded runtime implements it in
process; the Kafka runtime (a stateless gateway replica) implements the same interface over its
local replica, so routes do not change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from engine.kernel import Engine
from engine.kernel.catalog import Catalog
from engine.state.commands import Command
from engine.state.errors import Rejected
from engine.state.registry import EndDeviceRecord, Executed, Registry, Requester
from gateway.errors import Forbidden, NotFound
from gateway.http import RenderCache
from gateway.identity import ClientIdentity, IdentityError, identity_from_scope

if TYPE_CHECKING:
    from gateway.views import ViewCache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Reports(Protocol):
    """What devices report (DER resources, mirrors, log events, responses) and the telemetry log."""

    async def put_der(self, lfdi: str, kind: str, t: int, value: dict[str, Any]) -> None: ...

    def der(self, lfdi: str, kind: str) -> dict[str, Any] | None: ...

    def mup_id(self, lfdi: str, mrid: str) -> int | None: ...

    async def put_mup(
        self, lfdi: str, mrid: str, t: int, value: dict[str, Any]
    ) -> tuple[int, bool]: ...

    def mup_count(self, lfdi: str) -> int: ...

    def mups_of(self, lfdi: str) -> list[dict[str, Any]]: ...

    def mup(self, mup_id: int) -> dict[str, Any] | None: ...

    async def post_readings(
        self,
        mup_id: int,
        lfdi: str,
        t: int,
        meter_readings: list[dict[str, Any]],
        records: list[dict[str, Any]],
    ) -> None: ...

    def meter_reading(self, mup_id: int, mrid: str) -> dict[str, Any] | None: ...

    def meter_readings(self, mup_id: int) -> list[dict[str, Any]]: ...

    def meter_reading_owner(self, mrid: str) -> int | None: ...

    async def post_log_event(
        self, lfdi: str, t: int, value: dict[str, Any], telemetry: dict[str, Any] | None = None
    ) -> int: ...

    def log_events(self, lfdi: str) -> list[dict[str, Any]]: ...

    async def post_response(
        self, lfdi: str, program: str, t: int, value: dict[str, Any]
    ) -> int: ...

    def responses(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]: ...

    # None: this runtime keeps no telemetry log (Kafka: the telemetry topics are the log).
    def telemetry(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]] | None: ...

    # Called with a device's LFDI after what it reported changed (for the view cache).
    on_write: list[Callable[[str], None]]


class Backend(Protocol):
    registry: Registry
    ready: bool
    recovery: dict[str, int]
    on_change: list[Callable[[], None]]  # called after anything a client can GET may change

    @property
    def engine(self) -> Engine: ...

    @property
    def reporting(self) -> Reports: ...

    def now(self) -> int: ...

    async def submit(self, command: Command) -> Executed: ...

    async def submit_many(self, commands: list[Command]) -> list[Executed | Rejected]:
        """Each command accepted or refused on its own, in order; the accepted ones durable."""
        ...

    def lifecycle(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]: ...

    def effective_history(self, lfdi: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class GatewaySettings:
    default_limit: int = 1  # IEEE 2030.5: l defaults to 1
    max_limit: int = 500
    max_body: int = 64 * 1024
    max_depth: int = 32
    trusted_proxies: tuple[Network, ...] = ()
    proxy_header: str = "x-client-cert"
    timezone: str = "UTC"
    time_quality: int = 4  # 2030.5 Time.quality: 4 = obtained from a level 3 source (NTP)
    admin_token: str = ""
    admin_docs: bool = True
    notify_test_mode: bool = False  # allow http notificationURIs on loopback (tests only)
    conditional: bool = True  # ETags and 304s (off only for the no-cache benchmark baseline)
    replica_token: str | None = None  # the primary's internal listener: replicas' token
    profile: str = "csip"  # "csip" (US) or "csip-aus": the CSIP-AUS extensions (docs/profiles.md)
    pen: int | None = None  # the operator's IANA Private Enterprise Number (--pen)

    @property
    def aus(self) -> bool:
        """The CSIP-AUS profile: csipaus elements, ConnectionPoint (docs/profiles.md)."""
        return self.profile == "csip-aus"

    @property
    def mrid_pen(self) -> int | None:
        """The PEN that mRIDs the server makes up end with: ``pen``, else 0 under CSIP-AUS
        (which requires one), else none."""
        if self.pen is not None:
            return self.pen
        return 0 if self.aus else None


class NotifierView(Protocol):
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def drop_dead_letter(self, delivery_id: str) -> bool: ...

    def stats(self) -> Mapping[str, Any]: ...


@dataclass
class GatewayContext:
    backend: Backend
    settings: GatewaySettings
    cache: RenderCache = field(default_factory=RenderCache)
    notifier: NotifierView | None = None
    views: ViewCache | None = None  # set by the server when the view cache is on
    public_url: str = "https://127.0.0.1:8443"  # base of absolute URIs in notifications
    _programs_seen: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict)

    @property
    def registry(self) -> Registry:
        return self.backend.registry

    @property
    def catalog(self) -> Catalog:
        return self.backend.engine.catalog

    def visible_programs(self, requester: Requester) -> frozenset[str]:
        """Programs the requester may read: those of its own or its managed devices' FSAs."""
        version = self.registry.version
        known = self._programs_seen.get(requester.lfdi)
        if known is not None and known[0] == version:
            return known[1]
        programs = frozenset(
            p for device in self.registry.visible_devices(requester) for p in device.programs()
        )
        self._programs_seen[requester.lfdi] = (version, programs)
        return programs


@dataclass(frozen=True)
class Scope:
    """The caller, resolved once per request (envoy's request scope, for CSIP)."""

    identity: ClientIdentity
    requester: Requester
    now: int

    @property
    def lfdi(self) -> str:
        return self.identity.lfdi


def context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.context
    return ctx


async def client_scope(request: Request) -> Scope:
    """FastAPI dependency: the LFDI comes from the certificate (CSIP_RULES §7), never the URL.

    Unknown clients get 403 and learn nothing else. In ``open`` registration mode any client
    with a valid certificate is known (it may register itself).
    """
    ctx = context(request)
    try:
        identity = identity_from_scope(
            request.scope,
            trusted_proxies=ctx.settings.trusted_proxies,
            proxy_header=ctx.settings.proxy_header,
            replica_token=ctx.settings.replica_token,
        )
    except IdentityError as exc:
        raise Forbidden(f"client certificate refused: {exc}") from exc
    if identity is None:
        raise Forbidden("a client certificate is required")
    request.state.lfdi = identity.lfdi
    requester = ctx.registry.requester(identity.lfdi)
    if not requester.known and ctx.registry.registration_mode != "open":
        raise Forbidden("unknown client")
    return Scope(identity, requester, ctx.backend.now())


def device_for(ctx: GatewayContext, scope: Scope, edev_id: int) -> EndDeviceRecord:
    """An EndDevice the requester may see; 404 for anybody else's (nothing leaked)."""
    device = ctx.registry.device_by_edev(edev_id)
    if device is None or not ctx.registry.may_see(scope.requester, device):
        raise NotFound("no such EndDevice")
    return device
