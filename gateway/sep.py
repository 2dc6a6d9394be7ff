"""2030.5 resources of discovery and registration: builders and the EndDevice parser.

One builder per resource, keyword-only, returning an lxml element whose children follow the
XSD sequence exactly (sep2_schema_2018.xsd is strict about order: a base type's elements come
before its extension's, e.g. FunctionSetAssignments' links come *before* its mRID). Values are
checked against their XSD types as they are written, so a bad value is a ``ValueError`` here,
not an invalid document on the wire. The DER function set (programs, controls, defaults,
curves) is written in ``gateway/sep_der.py`` and re-exported here, so routes import one module;
the base types both use (IdentifiedObject head, List) are in ``gateway/sep_base.py``.

Types on the wire: times are Int64 Unix seconds, bitmaps fixed-width upper-case hexBinary
(responseRequired ``"03"``, deviceCategory ``"00040000"``), identifiers (mRID, lFDI) upper-case
hexBinary as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from gateway.sep_base import ListShape, add_identity, build_list, optional_checked
from gateway.sep_der import (
    active_der_control_list,
    default_der_control,
    der_control,
    der_control_list,
    der_curve,
    der_curve_list,
    der_program,
    der_program_list,
)
from gateway.xmlio import (
    INT32,
    INT64,
    NS,
    UINT8,
    UINT32,
    UINT40,
    XmlRejected,
    add,
    add_link,
    add_optional,
    aus,
    checked,
    hex_id_text,
    hex_text,
    optional_bool,
    optional_hex,
    optional_hex_text,
    optional_int,
    required_int,
    root,
)

__all__ = [
    "EndDeviceInput",
    "ListShape",
    "active_der_control_list",
    "build_list",
    "default_der_control",
    "der_control",
    "der_control_list",
    "der_curve",
    "der_curve_list",
    "der_program",
    "der_program_list",
    "device_capability",
    "end_device",
    "end_device_list",
    "function_set_assignments",
    "function_set_assignments_list",
    "parse_end_device",
    "registration",
    "time",
]

LFDI_DIGITS = 40  # HexBinary160
DEVICE_CATEGORY_BITS = 32  # DeviceCategoryType: HexBinary32

# -- lists ---------------------------------------------------------------------------------

END_DEVICE_LIST = ListShape("EndDeviceList", "EndDevice", subscribable=True, poll_rate=True)
FUNCTION_SET_ASSIGNMENTS_LIST = ListShape(
    "FunctionSetAssignmentsList", "FunctionSetAssignments", subscribable=True, poll_rate=True
)


def end_device_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    return build_list(
        END_DEVICE_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


def function_set_assignments_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    return build_list(
        FUNCTION_SET_ASSIGNMENTS_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


# -- resources -----------------------------------------------------------------------------


def device_capability(
    *,
    href: str,
    poll_rate: int,
    time_href: str,
    end_device_list_href: str,
    end_device_list_all: int,
    mirror_usage_point_list_href: str | None = None,
    mirror_usage_point_list_all: int | None = None,
    self_device_href: str | None = None,
    response_set_list_href: str | None = None,
    response_set_list_all: int | None = None,
) -> etree._Element:
    """DeviceCapability: the links of FunctionSetAssignmentsBase first, then its own."""
    element = root("DeviceCapability", href=href, pollRate=checked(poll_rate, UINT32, "pollRate"))
    add_link(element, "ResponseSetListLink", response_set_list_href, response_set_list_all)
    add_link(element, "TimeLink", time_href)
    add_link(element, "EndDeviceListLink", end_device_list_href, end_device_list_all)
    add_link(
        element,
        "MirrorUsagePointListLink",
        mirror_usage_point_list_href,
        mirror_usage_point_list_all,
    )
    add_link(element, "SelfDeviceLink", self_device_href)
    return element


def time(
    *,
    href: str,
    current_time: int,
    dst_end_time: int,
    dst_offset: int,
    dst_start_time: int,
    local_time: int | None,
    quality: int,
    tz_offset: int,
    poll_rate: int | None,
) -> etree._Element:
    """Time. ``quality`` per the XSD: 3 = from an authoritative source such as NTP, up to
    7 = intentionally uncoordinated; ``local_time`` may be left out."""
    element = root("Time", href=href, pollRate=optional_checked(poll_rate, UINT32, "pollRate"))
    add(element, "currentTime", checked(current_time, INT64, "currentTime"))
    add(element, "dstEndTime", checked(dst_end_time, INT64, "dstEndTime"))
    add(element, "dstOffset", checked(dst_offset, INT32, "dstOffset"))
    add(element, "dstStartTime", checked(dst_start_time, INT64, "dstStartTime"))
    add_optional(element, "localTime", optional_checked(local_time, INT64, "localTime"))
    add(element, "quality", checked(quality, UINT8, "quality"))
    add(element, "tzOffset", checked(tz_offset, INT32, "tzOffset"))
    return element


def end_device(
    *,
    href: str,
    lfdi: str,
    sfdi: int,
    changed_time: int,
    enabled: bool,
    device_category: int | None,
    fsa_list_href: str,
    fsa_list_all: int,
    registration_href: str,
    subscribable: int | None = None,
    der_list_href: str | None = None,
    der_list_all: int | None = None,
    log_event_list_href: str | None = None,
    log_event_list_all: int | None = None,
    post_rate: int | None = None,
    subscription_list_href: str | None = None,
    subscription_list_all: int | None = None,
    connection_point_href: str | None = None,
) -> etree._Element:
    """EndDevice: AbstractDevice's elements (up to the required sFDI), then EndDevice's, then
    CSIP-AUS's ConnectionPointLink (csipaus-core.xsd appends it)."""
    element = root(
        "EndDevice", href=href, subscribable=optional_checked(subscribable, UINT8, "subscribable")
    )
    add_link(element, "DERListLink", der_list_href, der_list_all)
    if device_category is not None:
        add(element, "deviceCategory", hex_text(device_category, bits=32, what="deviceCategory"))
    add(element, "lFDI", hex_id_text(lfdi, max_digits=LFDI_DIGITS, what="lFDI"))
    add_link(element, "LogEventListLink", log_event_list_href, log_event_list_all)
    add(element, "sFDI", checked(sfdi, UINT40, "sFDI"))
    add(element, "changedTime", checked(changed_time, INT64, "changedTime"))
    add(element, "enabled", enabled)
    add_link(element, "FunctionSetAssignmentsListLink", fsa_list_href, fsa_list_all)
    add_optional(element, "postRate", optional_checked(post_rate, UINT32, "postRate"))
    add_link(element, "RegistrationLink", registration_href)
    add_link(element, "SubscriptionListLink", subscription_list_href, subscription_list_all)
    add_link(element, aus("ConnectionPointLink"), connection_point_href)
    return element


def registration(
    *, href: str, date_time_registered: int, pin: int, poll_rate: int | None = None
) -> etree._Element:
    """Registration: the PIN a device checks against the one it was installed with."""
    element = root(
        "Registration", href=href, pollRate=optional_checked(poll_rate, UINT32, "pollRate")
    )
    add(element, "dateTimeRegistered", checked(date_time_registered, INT64, "dateTimeRegistered"))
    add(element, "pIN", checked(pin, UINT32, "pIN"))
    return element


def function_set_assignments(
    *,
    href: str,
    mrid: str,
    description: str | None,
    der_program_list_href: str,
    der_program_list_all: int,
    time_href: str | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """FunctionSetAssignments. Not an IdentifiedObject: its mRID follows the links it
    inherits from FunctionSetAssignmentsBase."""
    element = root(
        "FunctionSetAssignments",
        href=href,
        subscribable=optional_checked(subscribable, UINT8, "subscribable"),
    )
    add_link(element, "DERProgramListLink", der_program_list_href, der_program_list_all)
    add_link(element, "TimeLink", time_href)
    add_identity(element, mrid=mrid, description=description)
    return element


# -- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndDeviceInput:
    """What in-band registration (POST EndDevice) tells us; the rest of the body is ignored."""

    sfdi: int
    lfdi: str | None
    device_category: int | None
    changed_time: int | None
    enabled: bool | None
    post_rate: int | None


def parse_end_device(element: etree._Element) -> EndDeviceInput:
    """Read an EndDevice posted by a client (parse the body with ``xmlio.parse`` first).

    Lenient where 2030.5 lets a client be brief: only sFDI is required (changedTime, required
    by the XSD, is the client's own clock and we do not rely on it). Raises ``XmlRejected``.
    """
    if element.tag != f"{{{NS}}}EndDevice":
        raise XmlRejected(f"expected an EndDevice, not {etree.QName(element).localname}")
    return EndDeviceInput(
        sfdi=required_int(element, "sFDI", low=UINT40[0], high=UINT40[1]),
        lfdi=optional_hex_text(element, "lFDI", max_digits=LFDI_DIGITS),
        device_category=optional_hex(
            element, "deviceCategory", max_digits=DEVICE_CATEGORY_BITS // 4
        ),
        changed_time=optional_int(element, "changedTime", low=INT64[0], high=INT64[1]),
        enabled=optional_bool(element, "enabled"),
        post_rate=optional_int(element, "postRate", low=UINT32[0], high=UINT32[1]),
    )
