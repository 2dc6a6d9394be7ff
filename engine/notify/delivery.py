"""The notifier: POSTs queued Notifications to subscribers, retrying by the policy.

Theory of operation. One asyncio task, the scheduler, takes the heads that are due from the
``DeliveryQueue`` (at most ``concurrency`` in flight) and starts one attempt task for each. An
attempt POSTs the body with the shared ``aiohttp.ClientSession`` and settles the outcome in the
queue: 2xx deletes the delivery; a retryable failure (5xx, 408, 429, timeout, connection or TLS
error) puts it back at the head of its key with the next attempt time; anything else, or a failure
once
the delivery is older than the policy allows, makes it a dead letter. Settling wakes the
scheduler, which then sees the key's next delivery (or another key's) as due. Per-key order
follows from the queue handing out only heads; parallelism is across keys.

Everything runs on one event loop thread, the one that calls ``start`` (the queue is not
thread-safe). ``enqueue`` is synchronous and returns once the deliveries are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import aiohttp
from prometheus_client import CollectorRegistry

from engine.notify.metrics import NotifierMetrics
from engine.notify.policy import RetryPolicy, Verdict, verdict_for_status
from engine.notify.queue import DeliveryQueue
from engine.notify.records import DeadLetter, Delivery

log = logging.getLogger("csip.notify")

PRUNE_EVERY = 60.0  # seconds (on the notifier's clock) between prunes of remembered ids
USER_AGENT = "csipstream-notifier"
MAX_ANSWER_BYTES = 64 * 1024  # of a subscriber's answer body, read and thrown away
# TLS 1.2 suites offered, CSIP's first (CSIP §5.2.1: every 2030.5 server supports
# ECDHE-ECDSA-AES128-CCM8), then the usual ECDHE AEAD suites for subscribers behind ordinary
# TLS servers. Python's default list excludes CCM, and OpenSSL's "DEFAULT" keyword only works
# at the start of a cipher string, so the list is spelled out. TLS 1.3 suites are OpenSSL's.
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-CCM8:ECDH+AESGCM:ECDH+CHACHA20:!aNULL:!eNULL"


@dataclass(frozen=True, slots=True)
class NotifyTls:
    """Mutual TLS towards subscribers.

    ``cert`` and ``key``: the server's own certificate (chain) and key, presented as the client
    certificate (its extended key usage must allow TLS client authentication). ``ca``: the CA
    files that sign subscribers' certificates; when given, only they are trusted (a 2030.5
    subscriber's certificate chains to the 2030.5 root, not to a public CA); when empty, the
    system's trust store. ``check_hostname=False`` verifies the chain only: 2030.5 device
    certificates identify a device, not a host name.
    """

    cert: Path
    key: Path
    ca: Sequence[Path] = ()
    check_hostname: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: TLS 1.2+, certificates verified, CSIP's CCM8 suite offered first."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, host names checked
        if self.ca:
            for ca_file in self.ca:
                context.load_verify_locations(cafile=str(ca_file))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = self.check_hostname
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True, slots=True)
class NotifierStats:
    """Counts since this notifier started (delivered, retried, dead-lettered) and the queue now."""

    queued: int
    in_flight: int
    delivered: int
    retried: int
    dead_lettered: int
    oldest_queued_age: float


class Notifier:
    """Durable, ordered-per-key, retrying delivery of Notifications (see the module doc).

    ``directory`` holds the queue's database. ``client``, when given, is used as is (and not
    closed); otherwise the notifier builds one from ``tls`` with a request timeout of
    ``request_timeout`` seconds. ``clock`` must be the clock ``Delivery.created`` comes from.
    ``remember_done`` is how long a delivered id still drops a duplicate enqueue.
    """

    def __init__(
        self,
        directory: Path,
        *,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so one shared default is fine)
        concurrency: int = 64,
        client: aiohttp.ClientSession | None = None,
        tls: NotifyTls | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        request_timeout: float = 10.0,
        remember_done: float = 3600.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.policy = policy
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self._queue = DeliveryQueue(directory, remember_done=remember_done)
        self._client = client
        self._owns_client = client is None
        self._tls = tls
        self._clock = clock
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._last_prune = float("-inf")
        self._delivered = 0
        self._retried = 0
        self._dead_lettered = 0
        self.metrics = NotifierMetrics(
            registry,
            queued=lambda: self._queue.queued,
            in_flight=lambda: self._queue.in_flight,
            oldest_age=self._oldest_age,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering (what a previous process left queued resumes at its schedule)."""
        if self._closed or self._scheduler is not None:
            raise RuntimeError("a notifier starts once; make a new one on the same directory")
        if self._client is None:
            self._client = self._build_client()
        self._scheduler = asyncio.get_running_loop().create_task(
            self._schedule(), name="notify-scheduler"
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop: no new attempts; those under way get ``grace`` seconds (default: the request
        timeout) to finish and be settled, the rest are cancelled and stay queued as they were.
        Then the client (if ours) and the database are closed. Nothing queued is lost."""
        if self._closed:
            return
        self._stopping = True
        self._wake.set()
        if self._scheduler is not None:
            await self._scheduler
        attempts = set(self._attempts)
        if attempts:
            wait = self.request_timeout if grace is None else grace
            _, pending = await asyncio.wait(attempts, timeout=wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._closed = True
        self._queue.close()

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the public operations --------------------------------------------------------------

    def enqueue(self, deliveries: Iterable[Delivery]) -> int:
        """Queue deliveries durably (synced to disk before this returns) and wake the workers.

        Call it on the event loop thread, with as many deliveries at once as are at hand: each
        call is one synced write. Ids already queued or recently done are dropped; returns how
        many were new.
        """
        if self._closed:
            raise RuntimeError("the notifier is stopped")
        fresh = self._queue.enqueue(deliveries, self._clock())
        if fresh:
            self._wake.set()
        return len(fresh)

    def wake(self) -> None:
        """Look at the queue now (a test that moves its clock calls this)."""
        self._wake.set()

    def stats(self) -> NotifierStats:
        return NotifierStats(
            queued=self._queue.queued,
            in_flight=self._queue.in_flight,
            delivered=self._delivered,
            retried=self._retried,
            dead_lettered=self._dead_lettered,
            oldest_queued_age=self._oldest_age(),
        )

    def dead_letters(self, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Dead letters in id order; page with ``after`` = the last id of the previous page."""
        return self._queue.dead_letters(limit, after)

    def drop_dead_letter(self, delivery_id: str) -> bool:
        """Acknowledge a dead letter (delete it); False if there was none."""
        return self._queue.drop_dead_letter(delivery_id)

    def prune_dead_letters(self, older_than: float) -> int:
        """Delete dead letters given up more than ``older_than`` seconds ago."""
        return self._queue.prune_dead_letters(self._clock() - older_than)

    # -- scheduling -------------------------------------------------------------------------

    def _oldest_age(self) -> float:
        oldest = self._queue.oldest_created()
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            timeout: float | None = None
            try:
                now = self._clock()
                free = self.concurrency - len(self._attempts)
                for delivery in self._queue.take_due(now, free) if free > 0 else ():
                    task = loop.create_task(self._attempt(delivery))
                    self._attempts.add(task)
                    task.add_done_callback(self._attempts.discard)
                if now - self._last_prune >= PRUNE_EVERY:
                    self._last_prune = now
                    self._queue.prune_done(now)
                if len(self._attempts) < self.concurrency:
                    due = self._queue.next_due()
                    timeout = None if due is None else min(max(due - now, 0.0), PRUNE_EVERY)
            except Exception:
                log.exception("notification scheduling failed; trying again in a second")
                timeout = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _attempt(self, delivery: Delivery) -> None:
        """POST one delivery and settle the outcome (a cancelled attempt leaves it queued)."""
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        try:
            status, retry_after = await self._post(delivery)
            verdict = verdict_for_status(status)
            if verdict is not Verdict.DELIVERED:
                error = f"HTTP {status}"
        except asyncio.CancelledError:
            self._queue.release(delivery)
            raise
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            verdict, error = Verdict.REJECTED, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # timeouts, refused or reset connections, TLS failures
            verdict, error = Verdict.RETRY, f"{type(exc).__name__}: {exc}"
        try:
            self._settle(delivery, verdict, status, error, retry_after)
        except Exception:
            log.exception("could not record the outcome of notification %s", delivery.id)
            self._queue.release(delivery)
        # Free the slot before waking the scheduler: the task's done callback runs too late.
        task = asyncio.current_task()
        if task is not None:
            self._attempts.discard(task)
        self._wake.set()

    async def _post(self, delivery: Delivery) -> tuple[int, float | None]:
        """POST the body; the status and Retry-After seconds. The answer's body is read only up
        to ``MAX_ANSWER_BYTES`` (nobody needs it, and a subscriber could send gigabytes), and
        the whole exchange is bounded by the request timeout, not per read."""
        assert self._client is not None
        async with (
            asyncio.timeout(self.request_timeout),
            self._client.post(
                delivery.uri,
                data=delivery.body,
                headers={"content-type": delivery.content_type},
                allow_redirects=False,
            ) as response,
        ):
            read = 0
            async for chunk in response.content.iter_any():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    response.close()  # do not drain a huge answer: drop the connection
                    break
            return response.status, _retry_after(response.headers.get("retry-after"))

    def _settle(
        self,
        delivery: Delivery,
        verdict: Verdict,
        status: int | None,
        error: str | None,
        retry_after: float | None,
    ) -> None:
        now = self._clock()
        attempted = replace(
            delivery,
            attempts=delivery.attempts + 1,
            last_attempt=now,
            last_status=status,
            last_error=error,
        )
        if verdict is Verdict.DELIVERED:
            self._queue.delivered(attempted, now)
            self._delivered += 1
            self.metrics.delivered.inc()
            self.metrics.latency.observe(max(0.0, now - delivery.created))
            return
        next_attempt = None
        if verdict is Verdict.RETRY:
            next_attempt = self.policy.next_attempt(
                delivery.created, attempted.attempts, now, retry_after
            )
        if next_attempt is not None:
            self._queue.retry(replace(attempted, next_attempt=next_attempt))
            self._retried += 1
            self.metrics.retried.inc()
            return
        reason = "rejected" if verdict is Verdict.REJECTED else "expired"
        self._queue.dead_letter(attempted, now, reason)
        self._dead_lettered += 1
        self.metrics.dead_lettered.labels(reason).inc()
        log.warning(
            "notification %s to %s dead-lettered (%s) after %d attempts: %s",
            delivery.id,
            delivery.uri,
            reason,
            attempted.attempts,
            error,
        )

    def _build_client(self) -> aiohttp.ClientSession:
        """One session, keep-alive connections (at most ``concurrency``), our TLS settings.

        aiohttp rather than httpx here: measured on this 2-core machine, httpx (httpcore's pool)
        cost about 1 ms of CPU per POST and topped out near 1,000 notifications/s; aiohttp
        about 0.3 ms, over 2,000/s (benchmarks/RESULTS.md).
        """
        tls: ssl.SSLContext | bool = self._tls.ssl_context() if self._tls else True
        connector = aiohttp.TCPConnector(limit=self.concurrency, ssl=tls)
        return aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": USER_AGENT},
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After: <seconds>`` header (the HTTP-date form is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
