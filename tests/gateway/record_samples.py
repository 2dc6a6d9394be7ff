"""Values of any ``Record`` (gateway/sep_record.py), derived from its XSD declaration.

``sample(cls, full=...)`` gives a deterministic instance at the edges of every XSD type:
minimal fills only the required elements with each type's lowest value, full fills every element
with its highest (longest strings, widest identifiers, all-ones bitmaps, two repeated children).
``records(cls)`` is the Hypothesis strategy of arbitrary valid instances. Both only produce what
the parsers give back unchanged: hex upper-cased, text already whitespace-collapsed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from hypothesis import strategies as st

from gateway.sep_record import Bitmap, Boolean, Codec, HexId, Integer, Many, One, Record, Text
from gateway.sep_record import elements as declared

R = TypeVar("R", bound=Record)

URIS = ("https://client.example/notify", "http://10.0.0.7:8443/sep2/ntfy?x=1")
RELATIVE = ("/edev/1/derp/1/derc", "/edev/1/der/1/ders")


def sample(cls: type[R], *, full: bool) -> R:
    values = {
        item.attr: _sample_value(item.codec, full)
        for item in declared(cls)
        if full or item.required
    }
    return cls(**values)


def _sample_value(codec: Codec, full: bool) -> Any:
    if isinstance(codec, Many):
        return tuple(sample(codec.record, full=full) for _ in range(2 if full else 1))
    if isinstance(codec, One):
        return sample(codec.record, full=full)
    if isinstance(codec, Integer):
        return codec.bounds[1] if full else codec.bounds[0]
    if isinstance(codec, Boolean):
        return full
    if isinstance(codec, Bitmap):
        return 2**codec.bits - 1 if full else 0
    if isinstance(codec, HexId):
        return "AB" * (codec.digits // 2) if full else "01"
    if isinstance(codec, Text):
        if codec.absolute:
            return URIS[0]
        if codec.max_length is None:
            return RELATIVE[0]
        return "x" * codec.max_length if full else ""
    raise TypeError(f"no sample for {codec!r}")


def records(cls: type[R]) -> st.SearchStrategy[R]:
    """Arbitrary valid instances of ``cls``: optional elements present or not."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for item in declared(cls):
        strategy = _strategy(item.codec)
        if not item.required and not isinstance(item.codec, Many):
            strategy = st.none() | strategy
        fields[item.attr] = strategy
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


def _strategy(codec: Codec) -> st.SearchStrategy[Any]:
    if isinstance(codec, Many):
        return st.lists(records(codec.record), max_size=2).map(tuple)
    if isinstance(codec, One):
        return records(codec.record)
    if isinstance(codec, Integer):
        return st.integers(*codec.bounds)
    if isinstance(codec, Boolean):
        return st.booleans()
    if isinstance(codec, Bitmap):
        return st.integers(0, 2**codec.bits - 1)
    if isinstance(codec, HexId):
        return st.binary(min_size=1, max_size=codec.digits // 2).map(lambda b: b.hex().upper())
    if isinstance(codec, Text):
        if codec.absolute:
            return st.sampled_from(URIS)
        if codec.max_length is None:
            return st.sampled_from(RELATIVE)
        limit = codec.max_length
        words = st.text("abcXYZ019-_.:/+&<>'\"é", min_size=1, max_size=6)
        return st.lists(words, max_size=6).map(" ".join).filter(lambda text: len(text) <= limit)
    raise TypeError(f"no strategy for {codec!r}")
