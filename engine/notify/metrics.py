"""Prometheus metrics of a notifier, on the caller's registry (or a private one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifierMetrics:
    """Counters for what happened to deliveries, gauges read from the queue at scrape time.

    Without a registry the metrics go to a private one, so several notifiers (tests, or one per
    partition) never collide on names; pass the process registry to export them.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        queued: Callable[[], float],
        in_flight: Callable[[], float],
        oldest_age: Callable[[], float],
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.delivered = Counter(
            "csip_notify_delivered",
            "Notifications the subscriber accepted (2xx).",
            registry=self.registry,
        )
        self.retried = Counter(
            "csip_notify_retried",
            "Failed attempts scheduled to be tried again (5xx, 408, 429, timeouts, errors).",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "csip_notify_dead_lettered",
            "Notifications given up on, by reason (rejected: 4xx; expired: too old).",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "csip_notify_delivery_seconds",
            "From a notification's creation to its successful delivery.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=self.registry,
        )
        queued_gauge = Gauge(
            "csip_notify_queued", "Notifications waiting or in flight.", registry=self.registry
        )
        queued_gauge.set_function(queued)
        in_flight_gauge = Gauge(
            "csip_notify_in_flight", "Notification POSTs under way.", registry=self.registry
        )
        in_flight_gauge.set_function(in_flight)
        oldest_gauge = Gauge(
            "csip_notify_oldest_queued_age_seconds",
            "Age of the oldest queued notification (0 when none is queued).",
            registry=self.registry,
        )
        oldest_gauge.set_function(oldest_age)
