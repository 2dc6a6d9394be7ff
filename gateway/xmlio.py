"""The 2030.5 XML codec's two ends: a hardened parser for client bodies and the text encoders.

Theory of operation. Everything a client posts is hostile until proved otherwise, so ``parse``
refuses, before lxml sees the bytes, what no 2030.5 body ever needs: a non-UTF-8 body (2030.5
XML is UTF-8; a declared UTF-7 or UTF-16 could smuggle a DOCTYPE past a byte scan) and any
DOCTYPE (the only way to declare entities, hence XXE and "billion laughs"). lxml then parses
with entities, DTDs and the network switched off and the encoding forced to UTF-8; the tree is
checked again for a DTD, for nesting depth and for the root element. Each refusal is an
``XmlRejected`` whose reason is short and safe to return to the client.

The read helpers (``required_int``, ``optional_hex``...) read one child of a parsed element
with the lexical rules of its XSD type; the write helpers (``root``, ``add``, ``container``,
``add_link``, ``checked``, ``hex_text``, ``mrid_text``...) are their counterparts for the
builders in ``gateway/sep.py`` and ``gateway/sep_der.py``, which keep the XSD sequence order.
Body-size limits belong to the HTTP layer.
"""

from __future__ import annotations

import re

from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
_NS_PREFIX = f"{{{NS}}}"
# CSIP-AUS extensions (csipaus-ext.xsd): element names in Clark notation, "{AUS_NS}name",
# are written and read in that namespace; every other name is in the 2030.5 namespace.
AUS_NS = "https://csipaus.org/ns"
etree.register_namespace("csipaus", AUS_NS)


def aus(name: str) -> str:
    """The Clark name of CSIP-AUS element ``name``, for the read and write helpers."""
    return f"{{{AUS_NS}}}{name}"


def _qualified(name: str) -> str:
    return name if name.startswith("{") else _NS_PREFIX + name


def local_name(name: str) -> str:
    """``name`` without its namespace (Clark notation or plain)."""
    return name.rpartition("}")[2]


MAX_DEPTH = 32
# libxml2 stops at this depth without XML_PARSE_HUGE, which we never set.
_LIBXML2_MAX_DEPTH = 256
_REASON_ECHO = 80  # characters of client text echoed back in a reason

_INTEGER = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

# Inclusive bounds of the XSD integer types (UInt40 per 2030.5; the 2018 XSD says 2^48-1).
INT8 = (-(2**7), 2**7 - 1)
INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT8 = (0, 2**8 - 1)
UINT16 = (0, 2**16 - 1)
UINT32 = (0, 2**32 - 1)
UINT40 = (0, 2**40 - 1)
# Int48/UInt48 (readings, thresholds). The 2018 XSD's Int48 allows +2^47, one more than an Int48.
INT48 = (-(2**47), 2**47 - 1)
UINT48 = (0, 2**48 - 1)


class XmlRejected(ValueError):
    """A client body we refuse to read; ``reason`` is meant for the client (HTTP 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- parsing -------------------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers must not be shared between threads, and
    # building one costs about a microsecond.
    return etree.XMLParser(
        encoding="utf-8",  # overrides the XML declaration: no UTF-7/UTF-16 tricks
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
        remove_comments=True,
    )


def parse(
    body: bytes,
    *,
    expected_root: str | set[str] | None = None,
    max_depth: int = MAX_DEPTH,
) -> etree._Element:
    """Parse a client's 2030.5 XML body, refusing anything unsafe or off-protocol.

    ``expected_root`` names the acceptable root element(s) by local name. ``max_depth`` counts
    the root as level 1; libxml2 refuses more than 256 levels whatever it says. Raises
    ``XmlRejected``. The text ``<!DOCTYPE`` is refused even inside a comment or CDATA: no
    2030.5 body needs it, and scanning bytes keeps libxml2 from reading any declaration.
    """
    if not body.strip():
        raise XmlRejected("empty body")
    _require_utf8(body)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlRejected("DTDs are not accepted")
    parser = _parser()
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as error:
        raise _syntax_rejection(error, max_depth) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("DTDs are not accepted")
    _check_depth(root, max_depth)
    _check_root(root, expected_root)
    return root


def _require_utf8(body: bytes) -> None:
    # NUL is not allowed in XML 1.0, and every UTF-16/UTF-32 body of markup contains one.
    nul = body.find(b"\x00")
    if nul >= 0:
        raise XmlRejected(f"body is not UTF-8 text (NUL byte at offset {nul})")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise XmlRejected(f"body is not valid UTF-8 (byte offset {error.start})") from None


def _syntax_rejection(error: etree.XMLSyntaxError, max_depth: int) -> XmlRejected:
    last = error.error_log.last_error if error.error_log else None
    message = (last.message if last is not None else str(error)).strip()
    if "Excessive depth" in message:
        return XmlRejected(f"nesting deeper than {min(max_depth, _LIBXML2_MAX_DEPTH)} levels")
    if "amplification" in message or ("Entity '" in message and "not defined" in message):
        return XmlRejected(f"entities are not accepted ({_clip(message)})")
    line = last.line if last is not None else error.lineno
    column = last.column if last is not None else None
    where = f"line {line}" if column is None else f"line {line}, column {column}"
    return XmlRejected(f"malformed XML at {where}: {_clip(message)}")


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise XmlRejected(f"nesting deeper than {max_depth} levels")
        else:
            depth -= 1


def _check_root(root: etree._Element, expected_root: str | set[str] | None) -> None:
    """A 2030.5 root element (by local name), or one named in Clark notation (CSIP-AUS)."""
    qname = etree.QName(root)
    expected_names = {expected_root} if isinstance(expected_root, str) else expected_root or set()
    if root.tag in expected_names and root.tag.startswith("{"):
        return
    if qname.namespace != NS:
        raise XmlRejected(
            f"wrong namespace: root element {_clip(root.tag)} is not in the {NS} namespace"
        )
    if expected_root is None:
        return
    expected = {expected_root} if isinstance(expected_root, str) else expected_root
    if qname.localname not in expected:
        raise XmlRejected(
            f"root element {_clip(qname.localname)} is not one of {', '.join(sorted(expected))}"
        )


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_ECHO else text[: _REASON_ECHO - 3] + "..."


# -- reading children ----------------------------------------------------------------------


def _where(parent: etree._Element, name: str) -> str:
    return f"{etree.QName(parent).localname}/{local_name(name)}"


def optional_text(parent: etree._Element, name: str) -> str | None:
    """The whitespace-collapsed text of child ``name`` of ``parent``, or None if absent."""
    children = parent.findall(_qualified(name))
    if not children:
        return None
    if len(children) > 1:
        raise XmlRejected(f"{_where(parent, name)} appears more than once")
    child = children[0]
    if len(child):
        raise XmlRejected(f"{_where(parent, name)} must be text, not elements")
    return " ".join((child.text or "").split())


def optional_child(parent: etree._Element, name: str) -> etree._Element | None:
    """Complex child ``name`` of ``parent`` (timePeriod, ReadingType...), or None if absent."""
    children = parent.findall(_qualified(name))
    if len(children) > 1:
        raise XmlRejected(f"{_where(parent, name)} appears more than once")
    return children[0] if children else None


def required_text(parent: etree._Element, name: str) -> str:
    text = optional_text(parent, name)
    if text is None:
        raise XmlRejected(f"{_where(parent, name)} is missing")
    return text


def optional_int(
    parent: etree._Element, name: str, *, low: int | None = None, high: int | None = None
) -> int | None:
    """An xs:integer child (no ``1_000`` or ``0x1``, which Python's ``int`` would take)."""
    text = optional_text(parent, name)
    if text is None:
        return None
    value = int(text) if _INTEGER.fullmatch(text) else None
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in {low}..{high}" if low is not None and high is not None else ""
        raise XmlRejected(f"{_where(parent, name)} must be an integer{bounds}, not {text!r:.40}")
    return value


def required_int(
    parent: etree._Element, name: str, *, low: int | None = None, high: int | None = None
) -> int:
    value = optional_int(parent, name, low=low, high=high)
    if value is None:
        raise XmlRejected(f"{_where(parent, name)} is missing")
    return value


def optional_bool(parent: etree._Element, name: str) -> bool | None:
    """An xs:boolean child: true, false, 1 or 0."""
    text = optional_text(parent, name)
    if text is None:
        return None
    if text not in _BOOLEANS:
        raise XmlRejected(f"{_where(parent, name)} must be true or false, not {text!r:.40}")
    return _BOOLEANS[text]


def required_bool(parent: etree._Element, name: str) -> bool:
    value = optional_bool(parent, name)
    if value is None:
        raise XmlRejected(f"{_where(parent, name)} is missing")
    return value


def optional_hex_text(parent: etree._Element, name: str, *, max_digits: int) -> str | None:
    """An xs:hexBinary child (pairs of hex digits, at most ``max_digits``), upper-cased."""
    text = optional_text(parent, name)
    if text is None:
        return None
    if not _HEX.fullmatch(text) or not 0 < len(text) <= max_digits:
        raise XmlRejected(
            f"{_where(parent, name)} must be hexBinary of at most {max_digits} digits, "
            f"not {text!r:.50}"
        )
    return text.upper()


def optional_hex(parent: etree._Element, name: str, *, max_digits: int) -> int | None:
    """A hexBinary bitmap or identifier child as an integer."""
    text = optional_hex_text(parent, name, max_digits=max_digits)
    return None if text is None else int(text, 16)


def required_hex(parent: etree._Element, name: str, *, max_digits: int) -> int:
    value = optional_hex(parent, name, max_digits=max_digits)
    if value is None:
        raise XmlRejected(f"{_where(parent, name)} is missing")
    return value


# -- writing -------------------------------------------------------------------------------


def serialize(element: etree._Element) -> bytes:
    """UTF-8 bytes without an XML declaration, as every 2030.5 response body.

    The declaration is optional (UTF-8 is XML's default) and some clients parse the decoded
    text with lxml, which refuses a str that declares an encoding (CACTUS's client does).
    """
    body: bytes = etree.tostring(element, encoding="UTF-8", xml_declaration=False)
    return body


def root(tag: str, **attributes: str | int | None) -> etree._Element:
    """A root element in the 2030.5 default namespace; None attributes are left out."""
    element = etree.Element(_NS_PREFIX + tag, nsmap={None: NS})
    for name, value in attributes.items():
        if value is not None:
            element.set(name, str(value))
    return element


def add(parent: etree._Element, tag: str, value: str | int | bool) -> etree._Element:
    """Append child ``tag`` with ``value`` as its text (xs:boolean for bools)."""
    child = etree.SubElement(parent, _qualified(tag))
    if isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = str(value)
    return child


def add_optional(parent: etree._Element, tag: str, value: str | int | bool | None) -> None:
    """Append child ``tag`` only if ``value`` is not None (a minOccurs=0 element)."""
    if value is not None:
        add(parent, tag, value)


def container(parent: etree._Element, tag: str) -> etree._Element:
    """Append and return an empty complex child (EventStatus, DERControlBase...)."""
    return etree.SubElement(parent, _qualified(tag))


def add_link(parent: etree._Element, tag: str, href: str | None, all: int | None = None) -> None:
    """Append a Link (or a ListLink with ``all``) if ``href`` is given."""
    if href is None:
        if all is not None:
            raise ValueError(f"{tag}: 'all' given without an href")
        return
    link = etree.SubElement(parent, _qualified(tag))
    link.set("href", href)
    if all is not None:
        link.set("all", str(checked(all, UINT32, f"{tag}@all")))


def checked(value: int, bounds: tuple[int, int], what: str) -> int:
    """``value`` checked against its XSD type's range, so we never emit invalid XML."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer in {low}..{high}, not {value!r}")
    return value


def hex_text(value: int, *, bits: int, what: str) -> str:
    """A bitmap as fixed-width upper-case hexBinary: ``bits`` 8 gives ``"03"``."""
    checked(value, (0, 2**bits - 1), what)
    return f"{value:0{bits // 4}X}"


def hex_id_text(value: str, *, max_digits: int, what: str) -> str:
    """An identifier already in hex (mRID, LFDI), checked and upper-cased.

    Not padded: an mRID is compared as text with the one a device echoes in its Response.
    """
    if not _HEX.fullmatch(value) or not 0 < len(value) <= max_digits:
        raise ValueError(
            f"{what} must be an even number (2..{max_digits}) of hex digits, not {value!r}"
        )
    return value.upper()


def mrid_text(mrid: str) -> str:
    """An mRIDType (HexBinary128): at most 32 hex digits."""
    return hex_id_text(mrid, max_digits=32, what="mRID")


def string_text(value: str, *, max_length: int, what: str) -> str:
    """A String32/String192 value, refused (not silently cut) when too long."""
    if len(value) > max_length:
        raise ValueError(f"{what} is limited to {max_length} characters, got {len(value)}")
    return value
