"""Notification delivery for 2030.5 subscriptions: a durable queue and the workers that POST.

The server queues a ``Delivery`` (a Notification body for one subscriber's notificationURI) with
``Notifier.enqueue``; the notifier POSTs it, in order per subscription, retrying by the
``RetryPolicy`` for at least 30 minutes, and keeps what it gives up on as dead letters.
``check_notification_uri`` is the rule a Subscription's notificationURI must pass before it is
accepted. Both runtimes use this package: the embedded one in-process, the Kafka one in the
``csip notifier`` process.

- ``policy``: the URI rule and the retry rule (pure).
- ``records``: ``Delivery``, ``DeadLetter`` and how they are laid out on disk.
- ``queue``: the rocksdict-backed queue, per-key order, dead letters.
- ``delivery``: the ``Notifier`` (asyncio, aiohttp) and its TLS settings.
"""

from engine.notify.delivery import Notifier, NotifierStats, NotifyTls
from engine.notify.policy import (
    NotificationUriRejected,
    RetryPolicy,
    Verdict,
    check_notification_uri,
    verdict_for_status,
)
from engine.notify.queue import DeliveryQueue
from engine.notify.records import SEP_XML, DeadLetter, Delivery

__all__ = [
    "SEP_XML",
    "DeadLetter",
    "Delivery",
    "DeliveryQueue",
    "NotificationUriRejected",
    "Notifier",
    "NotifierStats",
    "NotifyTls",
    "RetryPolicy",
    "Verdict",
    "check_notification_uri",
    "verdict_for_status",
]
