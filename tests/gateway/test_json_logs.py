"""Structured logs: one JSON object per line with the record's extra fields, whatever they hold
(a worker's state has shard numbers as keys)."""

from __future__ import annotations

import logging

import orjson

from gateway.logs import JsonFormatter


def test_extra_fields_with_integer_keys_are_logged() -> None:
    record = logging.LogRecord("csip.worker", logging.INFO, __file__, 1, "worker stopped", (), None)
    record.worker = {"engine": {0: {"devices": 3}}, "held": {2: 5}}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "worker stopped" and line["level"] == "info"
    assert line["worker"] == {"engine": {"0": {"devices": 3}}, "held": {"2": 5}}
