"""Resources a device posts, as data: one declaration per XSD element drives four codecs.

Theory of operation. The resources a device reports (DERCapability, MirrorMeterReading,
Subscription...) have many optional elements, and each one must be read from XML, written to
XML in the XSD's sequence order, and stored as JSON. Writing those four by hand per element is
where order and range mistakes hide, so each resource is a frozen dataclass whose fields are
declared with ``xsd(name, codec)`` *in XSD order*; ``Record`` then reads, writes, dumps and loads
every field by walking that declaration. The codecs say how one XSD type looks in each form:

- ``Integer(bounds)``: xs:integer types (UInt8...Int64), JSON numbers.
- ``Boolean()``: xs:boolean.
- ``Bitmap(bits)``: HexBinary bitmaps held as ints, written fixed-width upper-case
  (roleFlags ``"0049"``); JSON keeps the wire's hex text.
- ``HexId(digits)``: hexBinary identifiers (mRID, LFDI) held as upper-case text, not padded.
- ``Text(max_length)``: String6...String192 and xs:anyURI (``absolute=True`` for URIs the XSD
  says SHALL be fully qualified).
- ``One(Record)`` / ``Many(Record)``: a complex child (timePeriod, ReadingType) or a repeated
  one (MirrorReadingSet*), read and written by the child record's own declaration.

Reading raises ``XmlRejected`` with a reason for the client (missing required element, value
out of its XSD range); writing raises ``ValueError``; loading JSON raises ``ValueError`` (and
refuses unknown keys, so a typo in stored data shows). JSON keys are the 2030.5 element names;
absent elements are left out. Unknown XML children are ignored, like ``parse_end_device`` does:
a device may send elements of a newer schema.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

from lxml import etree

from gateway.xmlio import (
    INT64,
    NS,
    UINT8,
    UINT32,
    XmlRejected,
    add,
    checked,
    container,
    hex_id_text,
    hex_text,
    local_name,
    optional_bool,
    optional_child,
    optional_hex,
    optional_hex_text,
    optional_int,
    optional_text,
    root,
    string_text,
)

_XSD = "xsd"
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]{1,16}")


# -- codecs --------------------------------------------------------------------------------


class Codec:
    """How one XSD type is read, written, dumped to JSON and loaded from it."""

    many = False

    def read(self, parent: etree._Element, name: str) -> Any:
        """The value of child ``name``, or None when absent; XmlRejected when malformed."""
        raise NotImplementedError

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def load(self, raw: Any, what: str) -> Any:
        raise NotImplementedError


class Integer(Codec):
    def __init__(self, bounds: tuple[int, int]) -> None:
        self.bounds = bounds

    def read(self, parent: etree._Element, name: str) -> int | None:
        return optional_int(parent, name, low=self.bounds[0], high=self.bounds[1])

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        add(parent, name, checked(value, self.bounds, what))

    def load(self, raw: Any, what: str) -> int:
        return checked(raw, self.bounds, what)


class Boolean(Codec):
    def read(self, parent: etree._Element, name: str) -> bool | None:
        return optional_bool(parent, name)

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        add(parent, name, self.load(value, what))

    def load(self, raw: Any, what: str) -> bool:
        if not isinstance(raw, bool):
            raise ValueError(f"{what} must be true or false, not {raw!r}")
        return raw


class Bitmap(Codec):
    """``minimal``: written with the fewest whole bytes ("0C", not "0000000C"), as devices and
    CACTUS write DER mode bitmaps and compare what they read back as text."""

    def __init__(self, bits: int, *, minimal: bool = False) -> None:
        self.bits = bits
        self.minimal = minimal

    def read(self, parent: etree._Element, name: str) -> int | None:
        return optional_hex(parent, name, max_digits=self.bits // 4)

    def _text(self, value: Any, what: str) -> str:
        text = hex_text(value, bits=self.bits, what=what)
        if self.minimal:
            text = text.lstrip("0")
            text = text.rjust(len(text) + len(text) % 2, "0") or "00"
        return text

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        add(parent, name, self._text(value, what))

    def dump(self, value: Any) -> str:
        return self._text(value, "bitmap")

    def load(self, raw: Any, what: str) -> int:
        """The wire's hex text, or a plain integer."""
        value = int(raw, 16) if isinstance(raw, str) and _HEX_DIGITS.fullmatch(raw) else raw
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be hex text or an integer, not {raw!r}")
        return checked(value, (0, 2**self.bits - 1), what)


class HexId(Codec):
    def __init__(self, digits: int) -> None:
        self.digits = digits

    def read(self, parent: etree._Element, name: str) -> str | None:
        return optional_hex_text(parent, name, max_digits=self.digits)

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        add(parent, name, self.load(value, what))

    def load(self, raw: Any, what: str) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"{what} must be hex text, not {raw!r}")
        return hex_id_text(raw, max_digits=self.digits, what=what)


class Text(Codec):
    """A string type; ``max_length`` None for xs:anyURI, which has no facet."""

    def __init__(self, max_length: int | None, *, absolute: bool = False) -> None:
        self.max_length = max_length
        self.absolute = absolute

    def read(self, parent: etree._Element, name: str) -> str | None:
        text = optional_text(parent, name)
        if text is None:
            return None
        where = f"{etree.QName(parent).localname}/{name}"
        if self.max_length is not None and len(text) > self.max_length:
            raise XmlRejected(f"{where} is limited to {self.max_length} characters")
        if self.absolute and not is_absolute_uri(text):
            raise XmlRejected(f"{where} must be an absolute http(s) URI, not {text!r:.80}")
        return text

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        add(parent, name, self.load(value, what))

    def load(self, raw: Any, what: str) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"{what} must be text, not {raw!r}")
        if self.max_length is not None:
            string_text(raw, max_length=self.max_length, what=what)
        if self.absolute and not is_absolute_uri(raw):
            raise ValueError(f"{what} must be an absolute http(s) URI, not {raw!r}")
        return raw


def is_absolute_uri(text: str) -> bool:
    """A fully-qualified http(s) URI with a host, as 2030.5 requires of notification URIs."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.netloc) and " " not in text


class One(Codec):
    """A complex child of type ``record`` (at most one)."""

    def __init__(self, record: type[Record]) -> None:
        self.record = record

    def read(self, parent: etree._Element, name: str) -> Record | None:
        child = optional_child(parent, name)
        return None if child is None else self.record.read(child)

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        if not isinstance(value, self.record):
            raise ValueError(f"{what} must be a {self.record.__name__}, not {value!r}")
        value.write(container(parent, name), what)

    def dump(self, value: Any) -> dict[str, Any]:
        return value.to_json()  # type: ignore[no-any-return]

    def load(self, raw: Any, what: str) -> Record:
        return self.record.load(raw, what)


class Many(One):
    """A repeated complex child (maxOccurs unbounded), held as a tuple; () when absent."""

    many = True

    def read(self, parent: etree._Element, name: str) -> tuple[Record, ...]:  # type: ignore[override]
        return tuple(self.record.read(child) for child in parent.findall(f"{{{NS}}}{name}"))

    def write(self, parent: etree._Element, name: str, value: Any, what: str) -> None:
        if not isinstance(value, tuple):
            raise ValueError(f"{what} must be a tuple of {self.record.__name__}, not {value!r}")
        for index, item in enumerate(value):
            super().write(parent, name, item, f"{what}[{index}]")

    def dump(self, value: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        return [item.to_json() for item in value]

    def load(self, raw: Any, what: str) -> tuple[Record, ...]:  # type: ignore[override]
        if not isinstance(raw, list):
            raise ValueError(f"{what} must be a list, not {raw!r}")
        return tuple(self.record.load(item, f"{what}[{index}]") for index, item in enumerate(raw))


# -- declarations --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Element:
    """One XSD element of a record: its name, codec, and whether the XSD requires it."""

    name: str  # plain (2030.5 namespace) or Clark notation (CSIP-AUS: xmlio.aus)
    codec: Codec
    required: bool
    attr: str

    @property
    def key(self) -> str:
        """The JSON key: the element's local name."""
        return local_name(self.name)


def xsd(name: str, codec: Codec, *, required: bool = False) -> Any:
    """Declare a dataclass field as XSD element ``name``; declare fields in XSD order.

    A required element has no default; an optional one defaults to None (``()`` if repeated).
    """
    default: Any = dataclasses.MISSING if required else (() if codec.many else None)
    return dataclasses.field(default=default, metadata={_XSD: (name, codec, required)})


_ELEMENTS: dict[type, tuple[Element, ...]] = {}


def elements(record: type[Record]) -> tuple[Element, ...]:
    """The XSD elements of ``record``, in XSD (declaration) order (computed once per class)."""
    cached = _ELEMENTS.get(record)
    if cached is not None:
        return cached
    found = []
    for field in dataclasses.fields(record):  # type: ignore[arg-type]
        if _XSD not in field.metadata:
            raise TypeError(f"{record.__name__}.{field.name} is not declared with xsd()")
        name, codec, required = field.metadata[_XSD]
        found.append(Element(name, codec, required, field.name))
    _ELEMENTS[record] = tuple(found)
    return _ELEMENTS[record]


def without_extensions(record: _R) -> _R:
    """``record`` without its CSIP-AUS elements (the ``csip`` profile neither stores nor
    echoes them; docs/profiles.md)."""
    cleared = {
        item.attr: (() if item.codec.many else None)
        for item in elements(type(record))
        if item.name.startswith("{")
    }
    return dataclasses.replace(record, **cleared) if cleared else record  # type: ignore[type-var]


_R = TypeVar("_R", bound="Record")


class Record:
    """Base of the resource dataclasses (declare them frozen, slots, kw_only)."""

    __slots__ = ()
    TAG: ClassVar[str] = ""  # the root element name, for records that are resources
    SUBSCRIBABLE: ClassVar[bool] = False  # the XSD type has the subscribable attribute

    # -- XML

    @classmethod
    def read(cls, element: etree._Element) -> Self:
        """Read every declared element of ``element``; XmlRejected on a bad or missing one."""
        values: dict[str, Any] = {}
        for item in elements(cls):
            value = item.codec.read(element, item.name)
            if value is None and item.required:
                where = f"{etree.QName(element).localname}/{item.key}"
                raise XmlRejected(f"{where} is missing")
            if value is not None:
                values[item.attr] = value
        return cls(**values)

    def write(self, element: etree._Element, what: str) -> None:
        """Append the declared elements to ``element`` in XSD order; ValueError on bad values."""
        for item in elements(type(self)):
            value = getattr(self, item.attr)
            if value is None or value == ():
                if item.required:
                    raise ValueError(f"{what}.{item.name} is required by the XSD")
                continue
            item.codec.write(element, item.name, value, f"{what}.{item.key}")

    @classmethod
    def parse(cls, element: etree._Element) -> Self:
        """Read a resource body whose root must be ``TAG``."""
        if element.tag != f"{{{NS}}}{cls.TAG}":
            raise XmlRejected(f"expected a {cls.TAG}, not {etree.QName(element).localname}")
        return cls.read(element)

    def render(self, *, href: str | None, subscribable: int | None = None) -> etree._Element:
        """This record as a resource: root ``TAG`` with ``href`` (and ``subscribable``)."""
        if subscribable is not None and not self.SUBSCRIBABLE:
            raise ValueError(f"{self.TAG} is not a SubscribableResource")
        element = root(
            self.TAG,
            href=href,
            subscribable=None
            if subscribable is None
            else checked(subscribable, UINT8, "subscribable"),
        )
        self.write(element, self.TAG)
        return element

    # -- JSON

    def to_json(self) -> dict[str, Any]:
        """The record keyed by 2030.5 element names; absent elements are left out."""
        out: dict[str, Any] = {}
        for item in elements(type(self)):
            value = getattr(self, item.attr)
            if value is not None and value != ():
                out[item.key] = item.codec.dump(value)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Self:
        return cls.load(raw, cls.__name__)

    @classmethod
    def load(cls, raw: Any, what: str) -> Self:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{what} must be an object, not {raw!r}")
        declared = elements(cls)
        unknown = set(raw) - {item.key for item in declared}
        if unknown:
            raise ValueError(f"{what} has unknown keys {sorted(unknown)}")
        values: dict[str, Any] = {}
        for item in declared:
            value = raw.get(item.key)
            if value is None:
                if item.required:
                    raise ValueError(f"{what}.{item.key} is required")
                continue
            values[item.attr] = item.codec.load(value, f"{what}.{item.key}")
        return cls(**values)


# -- shared complex types ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DateTimeInterval(Record):
    """An interval: duration (s) from start (Unix time); the XSD orders duration first."""

    duration: int = xsd("duration", Integer(UINT32), required=True)
    start: int = xsd("start", Integer(INT64), required=True)
