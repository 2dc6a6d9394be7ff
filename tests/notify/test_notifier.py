"""The notifier: order per subscription, retries, dead letters, duplicates, restarts, policy.

Every scenario runs a real Notifier against a real HTTP receiver (``tests.notify.sink``) on
loopback. Retries use a fast policy (tens of milliseconds) and a clock the test can move, so a
30-minute retry window passes in an instant.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from engine.notify import (
    Delivery,
    DeliveryQueue,
    NotificationUriRejected,
    Notifier,
    NotifyTls,
    RetryPolicy,
    Verdict,
    check_notification_uri,
    verdict_for_status,
)
from gateway.pki import Pki
from tests.gateway.tls_fixtures import device_listener_context
from tests.notify.sink import ShiftableClock, deliveries, drained, running_sink, until

FAST = RetryPolicy(initial_delay=0.02, factor=2.0, max_delay=0.1, jitter=0.0)


def notifier(directory: Path, **options: object) -> Notifier:
    options.setdefault("policy", FAST)
    options.setdefault("request_timeout", 2.0)
    return Notifier(directory, **options)  # type: ignore[arg-type]


# -- delivery and order -------------------------------------------------------------------------


def test_each_key_is_delivered_completely_and_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path) as n:
                assert n.enqueue(deliveries(url, ["a", "b", "c"], 20, created=time.time())) == 60
                await drained(n)
                stats = n.stats()
        assert sink.by_key() == {key: list(range(20)) for key in "abc"}
        assert sink.overlapping_keys == 0
        assert (stats.delivered, stats.retried, stats.dead_lettered) == (60, 0, 0)

    asyncio.run(scenario())


def test_different_keys_are_delivered_in_parallel_one_key_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            sink.delay = 0.2
            async with notifier(tmp_path, concurrency=16) as n:
                started = time.monotonic()
                n.enqueue(deliveries(url, [f"k{i}" for i in range(16)], 2, created=time.time()))
                await drained(n)
                elapsed = time.monotonic() - started
        assert sink.max_in_flight >= 8  # 16 keys at once, give or take scheduling
        assert sink.overlapping_keys == 0  # never two POSTs of one key at the same time
        assert elapsed < 2.0  # serially: 32 x 0.2 s = 6.4 s

    asyncio.run(scenario())


# -- retries and dead letters -------------------------------------------------------------------


def test_subscriber_refusing_for_a_while_then_recovering_gets_everything_in_order(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path) as n:
                sink.answer(503, seconds=0.5)
                n.enqueue(deliveries(url, ["a", "b"], 10, created=time.time()))
                await drained(n)
                stats = n.stats()
        assert sink.by_key() == {"a": list(range(10)), "b": list(range(10))}
        assert stats.retried > 0 and stats.dead_lettered == 0

    asyncio.run(scenario())


def test_dropped_connections_and_timeouts_are_retried(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path, request_timeout=0.2) as n:
                sink.drop(seconds=0.3)
                n.enqueue(deliveries(url, ["a"], 3, created=time.time()))
                await drained(n)
                sink.stall(1.0, seconds=0.3)
                n.enqueue(deliveries(url, ["b"], 3, created=time.time()))
                await drained(n)
                stats = n.stats()
        assert sink.by_key()["a"] == [0, 1, 2]
        # A POST the client gave up on may still be taken by the subscriber, later: the first
        # arrivals are in order, and the late copies are the duplicates ids exist to detect.
        assert list(dict.fromkeys(sink.by_key()["b"])) == [0, 1, 2]
        assert stats.retried >= 2 and stats.dead_lettered == 0

    asyncio.run(scenario())


def test_not_found_dead_letters_at_once_and_the_key_moves_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            sink.answer(404)
            async with notifier(tmp_path) as n:
                n.enqueue(deliveries(url, ["a"], 1, created=time.time()))
                await drained(n)
                assert sink.requests == 1  # no retry
                sink.recover()
                n.enqueue([Delivery("a/1", "a", url, b"a/1", created=time.time())])
                await drained(n)
                letters = n.dead_letters()
                stats = n.stats()
        assert sink.by_key() == {"a": [1]}
        [letter] = letters
        assert (letter.delivery.id, letter.reason) == ("a/0", "rejected")
        assert (letter.delivery.last_status, letter.delivery.attempts) == (404, 1)
        assert letter.delivery.body == b"a/0"
        assert (stats.dead_lettered, stats.retried, stats.delivered) == (1, 0, 1)

    asyncio.run(scenario())


def test_408_and_429_are_retried_honouring_retry_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path) as n:
                sink.answer(429, retry_after="0.3", seconds=0.1)
                started = time.monotonic()
                n.enqueue(deliveries(url, ["a"], 1, created=time.time()))
                await drained(n)
                waited = time.monotonic() - started
        assert sink.by_key() == {"a": [0]}
        assert waited >= 0.1  # not retried before the subscriber's Retry-After (capped: 0.1)

    asyncio.run(scenario())
    assert [verdict_for_status(s) for s in (200, 204, 408, 429, 500, 503)] == [
        Verdict.DELIVERED,
        Verdict.DELIVERED,
        *[Verdict.RETRY] * 4,
    ]
    assert {verdict_for_status(s) for s in (301, 400, 401, 403, 404, 410, 413)} == {
        Verdict.REJECTED
    }


def test_a_delivery_still_failing_when_too_old_is_dead_lettered(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ShiftableClock()
        with running_sink() as (sink, url):
            sink.answer(503)
            async with notifier(tmp_path, clock=clock) as n:
                n.enqueue(deliveries(url, ["a"], 2, created=clock()))
                await until(lambda: n.stats().retried >= 3)
                clock.shift(1800)  # the retry window is over
                n.wake()
                await drained(n)
                letters = n.dead_letters()
        assert sink.accepted == []
        assert [(x.delivery.id, x.reason) for x in letters] == [
            ("a/0", "expired"),
            ("a/1", "expired"),
        ]
        assert letters[0].delivery.attempts >= 4 and letters[0].delivery.last_status == 503
        assert letters[1].delivery.attempts == 1  # every delivery is tried at least once

    asyncio.run(scenario())


def test_dead_letters_page_by_id_and_can_be_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            sink.answer(400)
            async with notifier(tmp_path) as n:
                n.enqueue(deliveries(url, ["a", "b", "c"], 2, created=time.time()))
                await drained(n)
                first = n.dead_letters(limit=4)
                rest = n.dead_letters(limit=4, after=first[-1].delivery.id)
                assert n.drop_dead_letter("a/0") and not n.drop_dead_letter("a/0")
                remaining = [x.delivery.id for x in n.dead_letters()]
                assert n.prune_dead_letters(older_than=0) == 5
                assert n.dead_letters() == []
        assert [x.delivery.id for x in first + rest] == ["a/0", "a/1", "b/0", "b/1", "c/0", "c/1"]
        assert remaining == ["a/1", "b/0", "b/1", "c/0", "c/1"]

    asyncio.run(scenario())


# -- duplicates and restarts --------------------------------------------------------------------


def test_duplicate_ids_are_dropped_while_queued_and_after_delivery(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path) as n:
                sink.answer(503, seconds=0.2)
                batch = deliveries(url, ["a"], 3, created=time.time())
                assert n.enqueue(batch + batch) == 3
                assert n.enqueue(batch[:1]) == 0  # still queued
                await drained(n)
                assert n.enqueue(batch) == 0  # delivered recently
            async with notifier(tmp_path) as n:
                assert n.enqueue(batch) == 0  # remembered across a restart
        assert sink.by_key() == {"a": [0, 1, 2]}

    asyncio.run(scenario())


def test_a_done_id_is_forgotten_after_the_remember_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ShiftableClock()
        with running_sink() as (sink, url):
            async with notifier(tmp_path, clock=clock, remember_done=600) as n:
                batch = deliveries(url, ["a"], 1, created=clock())
                n.enqueue(batch)
                await drained(n)
                clock.shift(601)
                n.wake()  # the scheduler prunes remembered ids (at most once a minute)
                await asyncio.sleep(0.2)
                assert n.enqueue(batch) == 1
                await drained(n)
        assert sink.by_key() == {"a": [0, 0]}

    asyncio.run(scenario())


def test_restart_while_the_subscriber_refuses_delivers_everything_exactly_once(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            sink.answer(503)
            first = notifier(tmp_path)
            await first.start()
            first.enqueue(deliveries(url, ["a", "b", "c"], 10, created=time.time()))
            await until(lambda: first.stats().retried >= 6)
            await first.stop()
            assert sink.accepted == []

            queue = DeliveryQueue(tmp_path)  # what the next process finds on disk
            heads = queue.take_due(float("inf"), 10)
            queue.close()
            assert sorted(head.id for head in heads) == ["a/0", "b/0", "c/0"]
            assert all(head.attempts >= 1 and head.last_status == 503 for head in heads)

            sink.recover()
            async with notifier(tmp_path) as second:
                assert second.stats().queued == 30
                await drained(second)
        assert sink.by_key() == {key: list(range(10)) for key in "abc"}

    asyncio.run(scenario())


def test_stop_leaves_requests_that_do_not_finish_in_time_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            first = notifier(tmp_path)
            await first.start()
            sink.stall(0.5, seconds=0.3)
            first.enqueue(deliveries(url, ["a", "b"], 1, created=time.time()))
            await until(lambda: first.stats().in_flight == 2)
            await first.stop(grace=0.05)
            async with notifier(tmp_path) as second:
                await drained(second)
        # The stalled POSTs were cancelled by the client but may still be accepted by the
        # subscriber: at least once, in order.
        assert {key: numbers[-1] for key, numbers in sink.by_key().items()} == {"a": 0, "b": 0}

    asyncio.run(scenario())


# -- TLS, metrics -------------------------------------------------------------------------------


def test_mutual_tls_to_the_subscriber(tmp_path: Path, pki: Pki) -> None:
    identity = pki.identities["aggregator1"]  # a certificate valid for TLS client auth
    tls = NotifyTls(cert=identity.cert, key=identity.key, ca=[pki.ca_cert])

    async def scenario() -> None:
        with running_sink(device_listener_context(pki)) as (sink, url):
            assert url.startswith("https://127.0.0.1:")
            async with notifier(tmp_path, tls=tls) as n:
                n.enqueue(deliveries(url, ["a"], 3, created=time.time()))
                await drained(n)
        assert sink.by_key() == {"a": [0, 1, 2]}

    asyncio.run(scenario())


def test_counters_are_exported_to_the_given_registry(tmp_path: Path) -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with notifier(tmp_path, registry=registry) as n:
                sink.answer(503, seconds=0.2)
                n.enqueue(deliveries(url, ["a", "b"], 2, created=time.time()))
                await drained(n)

    asyncio.run(scenario())
    assert registry.get_sample_value("csip_notify_delivered_total") == 4
    assert (registry.get_sample_value("csip_notify_retried_total") or 0) >= 1
    assert registry.get_sample_value("csip_notify_queued") == 0


# -- the retry rule -----------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_with_jitter_and_retries_span_the_window() -> None:
    policy = RetryPolicy(random=lambda: 0.5)  # the middle of the jitter: no spread
    assert [policy.delay(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    low, high = RetryPolicy(random=lambda: 0.0), RetryPolicy(random=lambda: 1.0)
    assert (low.delay(3), high.delay(3)) == pytest.approx((3.2, 4.8))
    assert high.delay(20) == 300  # jitter never passes the cap

    created, now, attempts = 1000.0, 1000.0, []
    for failures in range(1, 100):  # bounded: ~13 attempts fit in 30 minutes
        next_attempt = policy.next_attempt(created, failures, now)
        if next_attempt is None:
            break
        attempts.append(next_attempt)
        now = next_attempt
    assert attempts[-1] == created + 1800  # the last retry is at the end of the window
    assert now - created >= 1800 and len(attempts) < 20
    assert policy.next_attempt(created, 1, created + 10, retry_after=120) == created + 130


# -- the notificationURI rule -------------------------------------------------------------------

ALLOWED = ["agg.example.com", "*.devices.example.net", "hub.example.org:8443", "127.0.0.1"]


@pytest.mark.parametrize(
    "uri",
    [
        "https://agg.example.com/notify",
        "https://agg.example.com:9000/notify?x=1",
        "https://AGG.example.com./notify",
        "https://a.devices.example.net/n",
        "https://a.b.devices.example.net/n",
        "https://hub.example.org:8443/n",
        "https://127.0.0.1/n",
    ],
)
def test_https_to_an_allowed_host_is_accepted(uri: str) -> None:
    check_notification_uri(uri, ALLOWED, test_mode=False)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://agg.example.com/notify", "https"),
        ("ftp://agg.example.com/notify", "https"),
        ("https://evil.example.com/notify", "allowed list"),
        ("https://agg.example.com.evil.io/notify", "allowed list"),
        ("https://devices.example.net/n", "allowed list"),  # the wildcard is below its suffix
        ("https://hub.example.org/n", "allowed list"),  # port 443, not 8443
        ("https://user:pw@agg.example.com/n", "user information"),
        ("https://agg.example.com/n#part", "fragment"),
        ("https:///n", "no host"),
        ("https://agg.example.com:99999/n", "not a valid URI"),
        ("https://agg.example.com/a b", "spaces"),
        ("/notify", "https"),
    ],
)
def test_other_uris_are_rejected_with_a_reason(uri: str, reason: str) -> None:
    with pytest.raises(NotificationUriRejected, match=reason):
        check_notification_uri(uri, ALLOWED, test_mode=False)


def test_plain_http_only_in_test_mode_and_only_to_loopback() -> None:
    loopback = ["127.0.0.1", "localhost", "[::1]", "127.0.0.2", "agg.example.com"]
    for uri in ("http://127.0.0.1:8080/n", "http://localhost/n", "http://[::1]:80/n"):
        check_notification_uri(uri, loopback, test_mode=True)
        with pytest.raises(NotificationUriRejected, match="https"):
            check_notification_uri(uri, loopback, test_mode=False)
    with pytest.raises(NotificationUriRejected, match="loopback"):
        check_notification_uri("http://agg.example.com/n", loopback, test_mode=True)
    with pytest.raises(NotificationUriRejected, match="allowed list"):
        check_notification_uri("http://127.0.0.1/n", ["localhost"], test_mode=True)
    with pytest.raises(NotificationUriRejected, match="allowed list"):
        check_notification_uri("https://agg.example.com/n", [], test_mode=False)


def test_an_injected_client_is_used_and_left_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_sink() as (sink, url):
            async with aiohttp.ClientSession(headers={"user-agent": "injected"}) as client:
                async with notifier(tmp_path, client=client) as n:
                    n.enqueue(deliveries(url, ["a"], 2, created=time.time()))
                    await drained(n)
                assert not client.closed
            assert sink.bodies() == [b"a/0", b"a/1"]

    asyncio.run(scenario())
