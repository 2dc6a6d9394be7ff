"""The values a worker publishes for the kernel's device outputs: for each of an output's
``records()``, ``orjson.dumps({"v": schema, **record})``, without making each record's dict.

An output is one change for a whole cohort of devices, so its records differ only in the
device's LFDI (in ``id`` and ``lfdi``). The JSON is therefore made in pieces, and each device's
value is those pieces joined around its LFDI: one system-wide control is 30,000 records at
10,000 devices, and a dict and a ``dumps`` per record cost as much as the kernel's whole
resolution of them. Cohorts in equal states get equal changes, so an ``Encoder`` also keeps the
pieces of each change it made (one encoder per publish: the cache lasts that long). An LFDI
from the kernel is 40 upper-case hex digits (``normalize_lfdi``), which JSON takes as they
are; an output with any other string there is encoded record by record.
``tests/runtime/test_encode.py`` checks the bytes are ``dumps``'s.
"""

from __future__ import annotations

import orjson

from engine.kernel.modes import thaw
from engine.kernel.outputs import EffectiveChange, Output, ResponseDue
from topics.partition import partition_for

# The bytes before, between and after the two copies of the LFDI in a record.
Pieces = tuple[bytes, bytes, bytes]


def _inner(text: str) -> bytes:
    """``text`` as it is inside a JSON string: escaped, without the quotes."""
    return orjson.dumps(text)[1:-1]


def _plain(lfdis: tuple[str, ...]) -> bool:
    """Every LFDI is written in JSON as it is (ASCII letters and digits)."""
    return all(lfdi.isascii() and lfdi.isalnum() for lfdi in lfdis)


class Encoder:
    def __init__(self, schema: int) -> None:
        self.schema = schema
        self._head = b'{"v":' + orjson.dumps(schema)
        self._pieces: dict[tuple[object, ...], Pieces] = {}

    def values(self, output: EffectiveChange | ResponseDue) -> list[tuple[str, bytes]]:
        """(LFDI, record value) for each record of ``output``, in ``records()`` order."""
        if not _plain(output.lfdis):
            return [(r["lfdi"], orjson.dumps({"v": self.schema, **r})) for r in output.records()]
        if isinstance(output, EffectiveChange):
            key: tuple[object, ...] = (
                "eff",
                output.t,
                output.mode,
                output.value,
                output.program,
                output.event,
            )
        else:
            key = ("resp", output.t, output.mrid, output.program, output.status, output.posted)
        pieces = self._pieces.get(key)
        if pieces is None:
            pieces = self._pieces[key] = self._made(output)
        head, middle, tail = pieces
        out: list[tuple[str, bytes]] = []
        for lfdi in output.lfdis:
            raw = lfdi.encode()
            out.append((lfdi, b"".join((head, raw, middle, raw, tail))))
        return out

    def _made(self, output: EffectiveChange | ResponseDue) -> Pieces:
        """A record is ``{"v", "id": "<kind>:<lfdi>:<rest>", "type", "t", "lfdi", ...}``, as
        ``records()`` builds it: the pieces around the two LFDIs."""
        if isinstance(output, EffectiveChange):
            value = None if output.value is None else thaw(output.value)
            kind, rest, record_type = b"eff", output.id_suffix(), "effective"
            after: tuple[tuple[str, object], ...] = (
                ("mode", output.mode),
                ("value", value),
                ("program", output.program),
                ("event", output.event),
            )
        else:
            kind, rest, record_type = b"resp", f"{output.mrid}:{output.status}", "response"
            after = (
                ("mRID", output.mrid),
                ("program", output.program),
                ("status", output.status),
                ("posted", output.posted),
            )
        head = self._head + b',"id":"' + kind + b":"
        middle = b":" + _inner(rest) + b'"' + _members((("type", record_type), ("t", output.t)))
        return head, middle + b',"lfdi":"', b'"' + _members(after) + b"}"


# (key, value) of each record for one partition, in the order the kernel made them.
Records = list[tuple[bytes, bytes]]


def by_partition(
    encoder: Encoder, outputs: list[Output], partitions: int
) -> tuple[dict[int, Records], dict[int, Records]]:
    """The device records of ``outputs`` for csip.effective-control and csip.response-lifecycle
    (keyed by LFDI, on the LFDI's partition), each partition's in output order: what a worker
    appends to one producer batch after another. Other outputs are left to the caller."""
    effective: dict[int, Records] = {}
    lifecycle: dict[int, Records] = {}
    # Partition and key bytes per LFDI: a device has several records in one publish.
    routes: dict[str, tuple[int, bytes]] = {}
    for output in outputs:
        if isinstance(output, EffectiveChange):
            topic = effective
        elif isinstance(output, ResponseDue):
            topic = lifecycle
        else:
            continue
        for lfdi, value in encoder.values(output):
            route = routes.get(lfdi)
            if route is None:
                route = routes[lfdi] = (partition_for(lfdi, partitions), lfdi.encode())
            partition, key = route
            records = topic.get(partition)
            if records is None:
                records = topic[partition] = []
            records.append((key, value))
    return effective, lifecycle


def _members(fields: tuple[tuple[str, object], ...]) -> bytes:
    """``,"name":value`` for each field, in order."""
    return b"".join(b',"' + name.encode() + b'":' + orjson.dumps(value) for name, value in fields)
