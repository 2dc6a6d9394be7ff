"""CSIP-AUS resources (namespace https://csipaus.org/ns, csipaus-ext.xsd): ConnectionPoint.

The other CSIP-AUS elements extend 2030.5 types and live with them: the DERControlBase limits
in ``gateway/sep_der.py``, doeModesSupported and doeModesEnabled in ``gateway/sep_report.py``,
ConnectionPointLink in ``gateway/sep.py``'s EndDevice.

A connectionPointId is the site's NMI (AEMO's National Metering Identifier): ten characters of
digits and upper-case letters other than O and I, optionally followed by AEMO's checksum digit;
``valid_nmi`` says whether a posted one is (CSIP-AUS expects the server to refuse others).
"""

from __future__ import annotations

import re

from lxml import etree

from gateway.xmlio import AUS_NS, NS, XmlRejected, aus, optional_text, string_text

CONNECTION_POINT = aus("ConnectionPoint")
_NMI = re.compile(r"[0-9A-HJ-NP-Z]{10}[0-9]?")


def nmi_checksum(nmi: str) -> int:
    """AEMO's NMI checksum: from the right, every other character's code doubled (starting with
    the last), the decimal digits of all summed; the checksum brings the sum to a multiple of
    10."""
    total = 0
    for index, char in enumerate(reversed(nmi)):
        value = ord(char) * (2 if index % 2 == 0 else 1)
        total += sum(int(digit) for digit in str(value))
    return (10 - total % 10) % 10


def valid_nmi(text: str) -> bool:
    """An NMI of ten characters, or eleven whose last is the right checksum digit."""
    if not _NMI.fullmatch(text):
        return False
    return len(text) == 10 or nmi_checksum(text[:10]) == int(text[10])


def connection_point(*, href: str, connection_point_id: str) -> etree._Element:
    """ConnectionPoint (a Resource): href, then connectionPointId (String32)."""
    element = etree.Element(CONNECTION_POINT, nsmap={None: AUS_NS, "sep": NS})
    element.set("href", href)
    child = etree.SubElement(element, aus("connectionPointId"))
    child.text = string_text(connection_point_id, max_length=32, what="connectionPointId")
    return element


def parse_connection_point(element: etree._Element) -> str:
    """The connectionPointId of a posted ConnectionPoint (``id`` is CSIP-AUS v1.1's name)."""
    if element.tag != CONNECTION_POINT:
        raise XmlRejected(f"expected a ConnectionPoint, not {etree.QName(element).localname}")
    value = optional_text(element, aus("connectionPointId"))
    if value is None:
        value = optional_text(element, aus("id"))
    if not value:
        raise XmlRejected("ConnectionPoint/connectionPointId is missing")
    if len(value) > 32:
        raise XmlRejected("ConnectionPoint/connectionPointId is limited to 32 characters")
    return value
