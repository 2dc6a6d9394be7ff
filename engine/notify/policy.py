"""What the notifier may POST to, and when it tries again.

Two rules, both pure (no I/O, no clock: time is an argument):

- ``check_notification_uri``: a subscriber's notificationURI must be ``https`` and name a host on
  the subscriber's allowed list, or the server could be turned into a tool for reaching hosts
  it should not (SSRF). Plain ``http`` exists only for tests, and only to this machine.
- ``RetryPolicy``: exponential backoff with jitter, for at least ``give_up_after`` seconds from
  the moment the notification was created; a 4xx answer (other than 408 and 429) means the
  subscriber will never take this body, so it is not retried.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import SplitResult, urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})
# A DNS name as a URI host may spell it (RFC 3986 reg-name restricted to LDH labels): no
# percent-escapes, no wildcards, nothing an HTTP client or a resolver could read differently.
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
DEFAULT_PORTS = {"https": 443, "http": 80}


class NotificationUriRejected(ValueError):
    """A notificationURI the server will not POST to; ``reason`` says why, for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_notification_uri(uri: str, allowed_hosts: Sequence[str], *, test_mode: bool) -> None:
    """Raise ``NotificationUriRejected`` unless the server may POST notifications to ``uri``.

    ``allowed_hosts`` entries are ``host``, ``host:port``, ``*.example.com`` or
    ``*.example.com:port`` (IPv6 literals in brackets). A wildcard matches any name below its
    suffix, never the suffix itself. An entry without a port allows any port. The list applies
    to every URI; ``http`` additionally needs ``test_mode`` and a loopback host (127.0.0.0/8,
    ::1, localhost), so a test can run its own receiver without certificates.
    """
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in uri):
        raise NotificationUriRejected("the URI contains spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise NotificationUriRejected(f"not a valid URI: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise NotificationUriRejected("the scheme must be https")
    if "#" in uri:
        raise NotificationUriRejected("a notificationURI may not have a fragment")
    if "@" in parts.netloc:
        raise NotificationUriRejected("a notificationURI may not carry user information")
    host = _host(parts)
    if not host:
        raise NotificationUriRejected("the URI has no host")
    if scheme == "http":
        if not test_mode:
            raise NotificationUriRejected("the scheme must be https")
        if not is_loopback(host):
            raise NotificationUriRejected("plain http is allowed only to loopback, in test mode")
    effective_port = port if port is not None else DEFAULT_PORTS[scheme]
    if not any(_matches(entry, host, effective_port) for entry in allowed_hosts):
        raise NotificationUriRejected(
            f"{host}:{effective_port} is not on the subscriber's allowed list"
        )


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (``host`` as ``_host`` gives it)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(parts: SplitResult) -> str:
    """The lower-case host without brackets or a trailing dot ("" when absent or malformed)."""
    host = (parts.hostname or "").rstrip(".")
    if _HOSTNAME.match(host):
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""


def _matches(entry: str, host: str, port: int) -> bool:
    """Whether one allowed-list entry admits ``host``:``port``."""
    entry = entry.strip().lower()
    wildcard = entry.startswith("*.")
    try:
        allowed = urlsplit("//" + (entry[2:] if wildcard else entry))
        allowed_port = allowed.port
    except ValueError:
        return False  # a malformed entry admits nothing
    pattern = _host(allowed)
    if not pattern or (allowed_port is not None and allowed_port != port):
        return False
    if wildcard:
        return host.endswith("." + pattern)
    return host == pattern


class Verdict(Enum):
    """What an HTTP answer means for a delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def verdict_for_status(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx retried; everything else (4xx, and 1xx/3xx, which a
    subscriber has no reason to send: redirects are not followed) rejected for good."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.REJECTED


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed delivery again, and when to give up.

    After the n-th failed attempt the delivery waits ``initial_delay * factor ** (n - 1)``
    seconds (at most ``max_delay``), spread by ``jitter`` (a fraction: 0.2 gives ±20 %) so that
    a subscriber coming back is not hit by every key at once. A ``Retry-After`` from the
    subscriber lengthens the wait (never beyond ``max_delay``). Retries continue while the
    delivery is younger than ``give_up_after`` seconds (counted from ``Delivery.created``); the
    last one is placed exactly at that age, so retries always span the whole window (30 minutes
    by default), then a failure dead-letters it. ``random`` is injectable so tests are exact.
    """

    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2
    give_up_after: float = 1800.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay:
            raise ValueError("need 0 < initial_delay <= max_delay")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.give_up_after <= 0:
            raise ValueError("give_up_after must be positive")

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        exponent = min(max(failures - 1, 0), 64)  # bounded: factor ** 1000 would overflow
        base = min(self.max_delay, self.initial_delay * self.factor**exponent)
        spread = base * (1 + self.jitter * (2 * self.random() - 1))
        if retry_after is not None:
            spread = max(spread, retry_after)
        return min(self.max_delay, max(0.0, spread))

    def next_attempt(
        self, created: float, failures: int, now: float, retry_after: float | None = None
    ) -> float | None:
        """When to try again after a retryable failure at ``now``; None: give up (too old)."""
        deadline = created + self.give_up_after
        if now >= deadline:
            return None
        return min(now + self.delay(failures, retry_after), deadline)
