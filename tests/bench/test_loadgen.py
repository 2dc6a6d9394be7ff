"""The load generator (benchmarks/loadgen.py) against small local TLS servers: what it sends,
what it counts, and that an open loop charges a slow server for the requests it delays."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httptools
import pytest

from benchmarks import loadgen
from benchmarks.loadgen import (
    ConnectionSpec,
    FixedResponse,
    LoadOptions,
    Plan,
    RequestSpec,
    generate,
    percentiles,
    request_bytes,
)
from gateway.pki import Pki, ensure_pki
from gateway.tls import server_ssl_context

POLL = RequestSpec("GET", "/derp/1/derc?l=6", {"If-None-Match": '"abc"'})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return ensure_pki(tmp_path_factory.mktemp("loadgen-pki"), devices=4, aggregators=0)


class Silent(asyncio.Protocol):
    """Accepts the connection and the requests, never answers: the slowest server."""


class Recording(FixedResponse):
    """Answers 304 to everything and notes the request targets."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__(b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n')
        self.seen = seen

    def on_url(self, url: bytes) -> None:
        self.seen.append(url.decode())


@contextmanager
def tls_server(pki: Pki, protocol: Callable[[], asyncio.Protocol]) -> Iterator[int]:
    """A TLS server (client certificates required) on its own loop and thread; its port."""
    context = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def seen() -> list[str]:
    return []


@pytest.fixture
def fixed_port(pki: Pki, seen: list[str]) -> Iterator[int]:
    with tls_server(pki, lambda: Recording(seen)) as port:
        yield port


@pytest.fixture
def silent_port(pki: Pki) -> Iterator[int]:
    with tls_server(pki, Silent) as port:
        yield port


def plan(pki: Pki, port: int, requests: tuple[RequestSpec, ...] = (POLL,)) -> Plan:
    devices = pki.of_kind("device")
    return Plan(
        host="127.0.0.1",
        port=port,
        ca=str(pki.ca_cert),
        connections=tuple(ConnectionSpec(str(d.cert), str(d.key), requests) for d in devices),
    )


def run(plan: Plan, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"connections": 4, "duration": 0.6, "warmup": 0.2}
    settings.update(options)
    return generate(plan, LoadOptions(**settings), lambda: None)


# -- what it sends ----------------------------------------------------------------------------


def test_a_request_is_built_once_as_http_1_1_bytes() -> None:
    assert request_bytes(POLL, "127.0.0.1", 8443) == (
        b'GET /derp/1/derc?l=6 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nIf-None-Match: "abc"\r\n\r\n'
    )


def test_a_post_carries_its_length_and_a_handshake_probe_asks_to_close() -> None:
    post = RequestSpec("POST", "/mup/1", {"Content-Type": "application/sep+xml"}, "<x/>")
    raw = request_bytes(post, "h", 1, close=True)
    assert raw.endswith(b"Content-Length: 4\r\nConnection: close\r\n\r\n<x/>")
    parsed: list[bytes] = []

    class Sink:
        def on_url(self, url: bytes) -> None:
            parsed.append(url)

    httptools.HttpRequestParser(Sink()).feed_data(raw)
    assert parsed == [b"/mup/1"]


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    found = percentiles(values)
    assert (found["p50_ms"], found["p99_ms"], found["max_ms"]) == (50.0, 99.0, 100.0)
    assert percentiles([])["p99_ms"] is None


# -- what it counts ---------------------------------------------------------------------------


def test_closed_loop_counts_every_answer_in_the_window(
    pki: Pki, fixed_port: int, seen: list[str]
) -> None:
    port = fixed_port
    result = run(plan(pki, port), mode="closed")
    assert result["completed"] >= 10
    assert result["statuses"] == {"304": result["completed"]}
    assert result["errors"] == {}
    assert set(seen) == {"/derp/1/derc?l=6"}
    assert result["identities_distinct"] == 4
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def offered(result: dict[str, Any]) -> int:
    """Open loop: every request due in the window is answered in it or counted late at its
    end, however fast the machine (answers to requests due in the warm-up may add a few)."""
    return int(result["completed"]) + int(result["late_at_end"])


def test_open_loop_sends_the_offered_rate(pki: Pki, fixed_port: int) -> None:
    port = fixed_port
    result = run(plan(pki, port), mode="open", rate=200.0, duration=1.0)
    assert 195 <= offered(result) <= 250
    assert result["errors"] == {}


def test_open_loop_charges_a_server_that_does_not_answer(
    pki: Pki, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coordinated omission: requests due but never answered count, from their scheduled
    time, so a stalled server cannot look fast by delaying the load. (The latencies are
    arithmetic on the schedule: each is the window's end less the request's due time.)"""
    monkeypatch.setattr(loadgen, "DRAIN_S", 0.1)  # nothing will come: do not wait for it
    port = silent_port
    result = run(plan(pki, port), mode="open", rate=100.0, duration=1.0, warmup=0.0)
    assert result["completed"] == 0
    assert 95 <= result["late_at_end"] <= 101
    assert 400 <= result["p50_ms"] <= 600


def test_handshakes_are_counted_with_or_without_a_request(
    pki: Pki, fixed_port: int, seen: list[str]
) -> None:
    port = fixed_port
    ccm8 = "ECDHE-ECDSA-AES128-CCM8"
    bare = run(plan(pki, port), mode="handshake", connections=2, cipher=ccm8)
    assert bare["completed"] >= 1 and set(bare["statuses"]) == {"0"}
    assert seen == []
    with_request = run(
        plan(pki, port), mode="handshake", connections=2, cipher=ccm8, handshake_request=True
    )
    assert set(with_request["statuses"]) == {"304"}
    assert seen


def test_several_processes_merge_into_one_result(pki: Pki, fixed_port: int) -> None:
    port = fixed_port
    result = run(plan(pki, port), mode="open", rate=200.0, duration=1.0, processes=2)
    assert 195 <= offered(result) <= 250
    assert result["processes"] == 2


def test_a_refused_client_certificate_is_an_error_not_a_result(pki: Pki, fixed_port: int) -> None:
    port = fixed_port
    stranger = pki.identities["stranger"]
    refused = Plan(
        "127.0.0.1",
        port,
        str(pki.ca_cert),
        (ConnectionSpec(str(stranger.cert), str(stranger.key), (POLL,)),),
    )
    result = run(refused, mode="closed", connections=1)
    assert result["completed"] == 0
    assert result["errors"]
