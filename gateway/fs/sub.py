"""Subscriptions (aggregators subscribe rather than poll) and the watcher that notifies them.

A client creates a Subscription under an EndDevice's SubscriptionList for one of the
subscribable resources below. After anything changes (a command, or time: a control becoming
active), the watcher renders every subscribed resource as its subscriber would GET it (lists cut
to the subscription's ``limit``), and when the body differs from the last one notified, queues a
Notification for durable delivery. When a subscribed resource disappears for its subscriber
(deleted, or no longer visible), a last Notification with status "resource deleted" is sent and
the subscription ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.notify import Delivery, NotificationUriRejected, Notifier, check_notification_uri
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import Requester, SubscriptionRecord
from gateway import sep_notify, uris
from gateway.context import GatewayContext, Scope, client_scope, context, device_for
from gateway.errors import BadRequest, NotFound
from gateway.fs.derp import render_control_list, render_default, render_program
from gateway.fs.edev import render_end_device_list
from gateway.fs.fsa import render_fsa_list, render_program_list
from gateway.http import Paging, Rendered, paging, read_xml, xml_response

log = logging.getLogger("csip.subscriptions")
router = APIRouter()

Render = Callable[[GatewayContext, Requester, tuple[str, ...], Paging, int], Rendered]


def _device(ctx: GatewayContext, requester: Requester, edev: str):  # type: ignore[no-untyped-def]
    device = ctx.registry.device_by_edev(int(edev))
    if device is None or not ctx.registry.may_see(requester, device):
        raise NotFound("no such EndDevice")
    return device


def _edev_list(
    ctx: GatewayContext, who: Requester, p: tuple[str, ...], page: Paging, now: int
) -> Rendered:
    return Rendered.of(render_end_device_list(ctx, who, page))


def _fsa_list(
    ctx: GatewayContext, who: Requester, p: tuple[str, ...], page: Paging, now: int
) -> Rendered:
    return Rendered.of(render_fsa_list(ctx, _device(ctx, who, p[0]), page))


def _program_list(
    ctx: GatewayContext, who: Requester, p: tuple[str, ...], page: Paging, now: int
) -> Rendered:
    device = _device(ctx, who, p[0])
    return Rendered.of(render_program_list(ctx, device, int(p[1]), page, now))


# Subscribable resources: URI pattern -> how to render it for a subscriber.
SUBSCRIBABLE: list[tuple[re.Pattern[str], Render]] = [
    (re.compile(r"^/edev$"), _edev_list),
    (re.compile(r"^/edev/(\d+)/fsa$"), _fsa_list),
    (re.compile(r"^/edev/(\d+)/fsa/(\d+)/derp$"), _program_list),
    (
        re.compile(r"^/derp/([^/]+)$"),
        lambda ctx, who, p, page, now: render_program(ctx, who, p[0], now),
    ),
    (
        re.compile(r"^/derp/([^/]+)/derc$"),
        lambda ctx, who, p, page, now: render_control_list(
            ctx, who, p[0], page, now, active_only=False
        ),
    ),
    (
        re.compile(r"^/derp/([^/]+)/actderc$"),
        lambda ctx, who, p, page, now: render_control_list(
            ctx, who, p[0], page, now, active_only=True
        ),
    ),
    (
        re.compile(r"^/derp/([^/]+)/dderc$"),
        lambda ctx, who, p, page, now: render_default(ctx, who, p[0]),
    ),
]


def render_subscribed(
    ctx: GatewayContext, requester: Requester, resource: str, limit: int, now: int
) -> Rendered:
    """The subscribed resource as the subscriber sees it; NotFound when it no longer can."""
    for pattern, render in SUBSCRIBABLE:
        match = pattern.match(resource)
        if match:
            return render(ctx, requester, match.groups(), Paging(0, 0, limit), now)
    raise NotFound("that resource cannot be subscribed to")


def resource_path(subscribed: str) -> str:
    """The path of a subscribedResource given as a path or as an absolute URL of this server."""
    parts = urlsplit(subscribed)
    path = parts.path or "/"
    if parts.query or parts.fragment:
        raise BadRequest("subscribedResource has no query or fragment")
    return path.rstrip("/") or "/"


# -- routes -------------------------------------------------------------------------------


def _subscription_element(record: SubscriptionRecord, edev_id: int) -> etree._Element:
    return sep_notify.subscription(
        href=uris.subscription(edev_id, record.id),
        value=sep_notify.Subscription(
            subscribed_resource=record.resource,
            encoding=0,
            level=record.level,
            limit=record.limit,
            notification_uri=record.notification_uri,
        ),
    )


@router.api_route(uris.SUBSCRIPTION_LIST, methods=["GET", "HEAD"])
async def subscription_list(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    held = sorted(
        (s for s in ctx.registry.subscriptions.values() if s.lfdi == device.lfdi),
        key=lambda s: s.id,
    )
    shown = page.page(held)
    element = sep_notify.subscription_list(
        href=uris.subscription_list(device.edev_id),
        all=len(held),
        results=len(shown),
        items=[_subscription_element(s, device.edev_id) for s in shown],
        poll_rate=ctx.registry.poll_rates["sub"],
    )
    return xml_response(request, element)


@router.post(uris.SUBSCRIPTION_LIST)
async def create_subscription(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    element = await read_xml(request, expected_root="Subscription", max_bytes=ctx.settings.max_body)
    posted = sep_notify.parse_subscription(element)
    resource = resource_path(posted.subscribed_resource)
    try:
        render_subscribed(ctx, scope.requester, resource, posted.limit, scope.now)
    except NotFound as exc:
        raise BadRequest(f"cannot subscribe to {resource}: {exc.reason}") from exc
    try:
        check_notification_uri(
            posted.notification_uri,
            ctx.registry.allowed_notification_hosts(scope.lfdi),
            test_mode=ctx.settings.notify_test_mode,
        )
    except NotificationUriRejected as exc:
        raise BadRequest(f"notificationURI refused: {exc}") from exc
    executed = await ctx.backend.submit(
        c.CreateSubscription(
            lfdi=device.lfdi,
            subscriber=scope.lfdi,
            resource=resource,
            notification_uri=posted.notification_uri,
            limit=posted.limit,
            level=posted.level,
        )
    )
    subscription_id = int(executed.result["subscription"])
    watcher: SubscriptionWatcher | None = request.app.state.watcher
    if watcher is not None:
        watcher.baseline(subscription_id)
    return Response(
        status_code=201, headers={"Location": uris.subscription(device.edev_id, subscription_id)}
    )


def _held(
    ctx: GatewayContext, scope: Scope, edev: int, subscription: int
) -> tuple[SubscriptionRecord, int]:
    device = device_for(ctx, scope, edev)
    record = ctx.registry.subscriptions.get(subscription)
    if record is None or record.lfdi != device.lfdi:
        raise NotFound("no such Subscription")
    return record, device.edev_id


@router.api_route(uris.SUBSCRIPTION, methods=["GET", "HEAD"])
async def get_subscription(
    request: Request, edev: int, subscription: int, scope: Scope = Depends(client_scope)
) -> Response:
    record, edev_id = _held(context(request), scope, edev, subscription)
    return xml_response(request, _subscription_element(record, edev_id))


@router.delete(uris.SUBSCRIPTION)
async def delete_subscription(
    request: Request, edev: int, subscription: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    record, _ = _held(ctx, scope, edev, subscription)
    await ctx.backend.submit(c.EndSubscription(record.id, "deleted", requested_by=scope.lfdi))
    return Response(status_code=204)


# -- the watcher --------------------------------------------------------------------------


@dataclass
class WatcherStats:
    checks: int = 0
    queued: int = 0
    ended: int = 0


class SubscriptionWatcher:
    """Turns changes of subscribed resources into queued Notifications (see module doc)."""

    def __init__(
        self,
        ctx: GatewayContext,
        notifier: Notifier,
        *,
        last_sent: Callable[[int], tuple[str, int] | None],
        remember: Callable[[int, str, int], None],
        debounce: float = 0.01,
        baseline_new: bool = False,
    ) -> None:
        self.ctx = ctx
        self.baseline_new = baseline_new
        self.notifier = notifier
        self._last_sent = last_sent
        self._remember = remember
        self.debounce = debounce
        self._pending: asyncio.Task[None] | None = None
        self._again = False
        self.stats = WatcherStats()

    def baseline(self, subscription_id: int) -> None:
        """A new subscription starts from what its subscriber can see now (no notification)."""
        record = self.ctx.registry.subscriptions.get(subscription_id)
        if record is None or self._last_sent(subscription_id) is not None:
            # A check that ran while the subscription was being written has notified it
            # already; starting its count again would reuse that delivery's id.
            return
        requester = self.ctx.registry.requester(record.subscriber)
        try:
            rendered = render_subscribed(
                self.ctx, requester, record.resource, record.limit, self.ctx.backend.now()
            )
        except NotFound:
            return
        self._remember(record.id, rendered.etag, 0)

    async def stop(self) -> None:
        """Let a pending check finish (before the notifier stops)."""
        if self._pending is not None and not self._pending.done():
            self._again = False
            try:
                await asyncio.wait_for(self._pending, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._pending.cancel()

    def changed(self) -> None:
        """Something changed: check the subscriptions soon (changes close together coalesce)."""
        if self._pending is not None and not self._pending.done():
            self._again = True
            return
        self._pending = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            await asyncio.sleep(self.debounce)
            try:
                await self.check()
            except Exception:
                log.exception("subscription check failed")
            if not self._again:
                return

    async def check(self) -> None:
        ctx = self.ctx
        now = ctx.backend.now()
        self.stats.checks += 1
        deliveries: list[Delivery] = []
        sent: list[tuple[int, str, int]] = []
        ended: list[SubscriptionRecord] = []
        for record in list(ctx.registry.subscriptions.values()):
            holder = ctx.registry.devices.get(record.lfdi)
            href = ctx.public_url + uris.subscription(holder.edev_id if holder else 0, record.id)
            requester = ctx.registry.requester(record.subscriber)
            try:
                if holder is None:
                    raise NotFound("the EndDevice holding the subscription is gone")
                rendered = render_subscribed(ctx, requester, record.resource, record.limit, now)
            except NotFound:
                ended.append(record)
                body = sep_notify.notification(
                    subscribed_resource=record.resource,
                    subscription_uri=href,
                    status=sep_notify.NOTIFICATION_RESOURCE_DELETED,
                    resource=None,
                )
                deliveries.append(self._delivery(record, f"end:{record.id}", body, now))
                continue
            last = self._last_sent(record.id)
            if last is None and self.baseline_new:
                # First sight of a subscription created elsewhere (a gateway replica): start
                # from what its subscriber sees now, as the embedded server does.
                self._remember(record.id, rendered.etag, 0)
                continue
            if last is not None and last[0] == rendered.etag:
                continue
            number = 1 if last is None else last[1] + 1
            body = sep_notify.notification(
                subscribed_resource=record.resource,
                subscription_uri=href,
                status=sep_notify.NOTIFICATION_DEFAULT,
                resource=etree.fromstring(rendered.body),
            )
            deliveries.append(self._delivery(record, f"{record.id}:{number}", body, now))
            sent.append((record.id, rendered.etag, number))
        if deliveries:
            # Queued (durably) before it is remembered as sent: at least once, never lost.
            self.notifier.enqueue(deliveries)
            self.stats.queued += len(deliveries)
        for subscription_id, etag, number in sent:
            self._remember(subscription_id, etag, number)
        for record in ended:
            try:
                await ctx.backend.submit(c.EndSubscription(record.id, "resource deleted"))
                self.stats.ended += 1
            except Rejected:
                pass  # already ended

    def _delivery(
        self, record: SubscriptionRecord, tag: str, body: etree._Element, now: int
    ) -> Delivery:
        from gateway import xmlio

        return Delivery(
            id=tag,
            key=str(record.id),
            uri=record.notification_uri,
            body=xmlio.serialize(body),
            created=float(now),
        )
