"""A subscriber for notifier tests: an ASGI app on 127.0.0.1 that records what it is sent.

``Sink`` answers 204 and records each body, and can be told to misbehave for a while: answer a
status (503, 404, 429 ...), drop the connection mid-answer, or stall. ``running_sink`` serves it
in a background thread (``serving`` of the gateway's TLS fixtures, so HTTPS with client
certificates works too) and yields it with its notification URL. ``ShiftableClock`` is the
notifier clock tests move forward to make deliveries old.

Bodies in these tests are ``b"<key>/<n>"``, so the sink can tell which subscription a POST is
for and check that a key never has two POSTs in flight.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.notify import Delivery, Notifier
from gateway.tls import Message, Receive, Scope, Send
from tests.gateway.tls_fixtures import serving


@dataclass
class Misbehaviour:
    """What the sink does instead of 204, until ``until`` (monotonic; None: until told)."""

    kind: str  # "status", "drop" or "stall"
    status: int = 503
    retry_after: str | None = None
    stall: float = 0.0
    until: float | None = None


class Sink:
    """The ASGI app: records accepted bodies (in arrival order) and every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: list[bytes] = []
        self.requests = 0
        self.max_in_flight = 0
        self.overlapping_keys = 0  # POSTs that arrived while their key had one in flight
        self._in_flight: list[bytes] = []
        self._misbehaviour: Misbehaviour | None = None
        self.delay = 0.0  # seconds each accepted POST takes

    # -- what the test tells it -------------------------------------------------------------

    def answer(
        self, status: int, *, seconds: float | None = None, retry_after: str | None = None
    ) -> None:
        """Answer ``status`` (for ``seconds``, or until ``recover``)."""
        self._misbehave(Misbehaviour("status", status=status, retry_after=retry_after), seconds)

    def drop(self, *, seconds: float | None = None) -> None:
        """Start a 200 answer, then close the connection before its body."""
        self._misbehave(Misbehaviour("drop"), seconds)

    def stall(self, stall: float, *, seconds: float | None = None) -> None:
        """Wait ``stall`` seconds before answering 204 (to make the client time out)."""
        self._misbehave(Misbehaviour("stall", stall=stall), seconds)

    def recover(self) -> None:
        with self._lock:
            self._misbehaviour = None

    def _misbehave(self, misbehaviour: Misbehaviour, seconds: float | None) -> None:
        misbehaviour.until = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._misbehaviour = misbehaviour

    # -- what the test reads ----------------------------------------------------------------

    def bodies(self) -> list[bytes]:
        with self._lock:
            return list(self.accepted)

    def by_key(self) -> dict[str, list[int]]:
        """Accepted bodies per key, as the numbers they carry, in arrival order."""
        ordered: dict[str, list[int]] = {}
        for body in self.bodies():
            key, number = body.decode().split("/")
            ordered.setdefault(key, []).append(int(number))
        return ordered

    # -- the app ----------------------------------------------------------------------------

    def _current(self) -> Misbehaviour | None:
        with self._lock:
            misbehaviour = self._misbehaviour
            if misbehaviour and misbehaviour.until and time.monotonic() >= misbehaviour.until:
                self._misbehaviour = misbehaviour = None
            return misbehaviour

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        key = body.split(b"/")[0]
        with self._lock:
            self.requests += 1
            if key in self._in_flight:
                self.overlapping_keys += 1
            self._in_flight.append(key)
            self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
        try:
            await self._respond(body, send)
        finally:
            with self._lock:
                self._in_flight.remove(key)

    async def _respond(self, body: bytes, send: Send) -> None:
        misbehaviour = self._current()
        if misbehaviour is not None and misbehaviour.kind == "status":
            headers = []
            if misbehaviour.retry_after is not None:
                headers.append((b"retry-after", misbehaviour.retry_after.encode()))
            await _answer(send, misbehaviour.status, headers)
            return
        if misbehaviour is not None and misbehaviour.kind == "drop":
            # A declared body that never comes: uvicorn closes the connection on the error.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"100")],
                }
            )
            raise ConnectionAbortedError("the sink drops this connection (on purpose)")
        if misbehaviour is not None and misbehaviour.kind == "stall":
            await asyncio.sleep(misbehaviour.stall)
        elif self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.accepted.append(body)
        await _answer(send, 204, [])


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    for _ in range(10_000):  # bounded: test bodies come in one or two chunks
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


@contextmanager
def running_sink(ssl_context: ssl.SSLContext | None = None) -> Iterator[tuple[Sink, str]]:
    """A ``Sink`` served on 127.0.0.1 (an ephemeral port), with its notification URL."""
    sink = Sink()
    with serving(sink, ssl_context=ssl_context) as base_url:
        yield sink, f"{base_url}/notify"


class ShiftableClock:
    """Wall-clock time plus an offset a test can add to (deliveries age at once)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def shift(self, seconds: float) -> None:
        self.offset += seconds


def deliveries(url: str, keys: list[str], per_key: int, *, created: float) -> list[Delivery]:
    """``per_key`` deliveries for each key, interleaved (k1/0, k2/0, ..., k1/1, ...)."""
    return [
        Delivery(id=f"{key}/{n}", key=key, uri=url, body=f"{key}/{n}".encode(), created=created)
        for n in range(per_key)
        for key in keys
    ]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.01)


async def drained(notifier: Notifier, timeout: float = 10.0) -> None:
    """Wait until nothing is queued (delivered or dead-lettered)."""
    await until(lambda: notifier.stats().queued == 0, timeout)
