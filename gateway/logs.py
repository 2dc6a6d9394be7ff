"""Structured logs: one JSON object per line on stderr, with the record's extra fields.

The per-request access log has its own writer (``AccessLog``): at ten thousand polls a second,
``logging``'s record objects, handler lock and one write per line would cost more than
answering the poll. It writes the same JSON lines (logger ``csip.access``), buffered and
flushed every 200 ms or 64 KiB, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure(level: str = "info", *, access: bool = True) -> None:
    """JSON lines on stderr at ``level``; ``access=False`` silences the per-request log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    logging.getLogger("csip.access").disabled = not access


class AccessLog:
    """One JSON line per request, as ``JsonFormatter`` would write it, buffered."""

    FLUSH_BYTES = 64 * 1024
    FLUSH_SECONDS = 0.2

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return logging.getLogger("csip.access").isEnabledFor(logging.INFO)

    def request(self, **fields: Any) -> None:
        line = orjson.dumps(
            {
                "ts": round(time.time(), 3),
                "level": "info",
                "logger": "csip.access",
                "msg": "request",
                **fields,
            }
        )
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = b"\n".join(self._lines) + b"\n"
        self._lines.clear()
        self._size = 0
        stream = self._stream or sys.stderr
        try:
            stream.buffer.write(data)
            stream.flush()
        except (AttributeError, ValueError):  # a text-only stream (tests), or closed
            stream.write(data.decode())


ACCESS = AccessLog()
