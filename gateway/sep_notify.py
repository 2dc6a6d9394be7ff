"""2030.5 subscriptions, notifications and responses: how server and device tell each other.

A device subscribes (POST Subscription to its SubscriptionList) to a resource such as its
DERControlList; when the resource changes the server POSTs a Notification, carrying the new
representation, to the device's notificationURI. A device answers a DERControl by POSTing a
DERControlResponse to the control's replyTo (a ResponseList under a ResponseSet). Subscription
and Response are ``Record``s (``gateway/sep_record.py``): parsed, rendered back and stored as
JSON from one declaration in XSD order; Notification, ResponseSet and the lists are built only.

XSD notes the routes depend on: Subscription requires subscribedResource, encoding, level,
limit and notificationURI, with the optional Condition *between* subscribedResource and
encoding. notificationURI, subscriptionURI and newResourceURI SHALL be absolute URIs.
Notification's Resource element is typed abstractly: the resource goes in as
``<Resource xsi:type="DERControlList" all=".." results="..">`` (the element is renamed and
typed, its attributes and children kept). A Response requires endDeviceLFDI and subject;
createdDateTime and status are optional. ResponseList holds ``Response`` elements (a
DERControlResponse adds nothing to Response); ResponseSet is an IdentifiedObject, not
subscribable. SubscriptionList and ResponseSetList have pollRate, ResponseList does not, and
none of the three is subscribable.
"""

# xsd() returns dataclasses.field(...): a declaration, not a shared mutable default.
# ruff: noqa: RUF009

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from lxml import etree

from gateway.sep_base import ListShape, add_identity, build_list
from gateway.sep_record import HexId, Integer, One, Record, Text, is_absolute_uri, xsd
from gateway.xmlio import (
    INT48,
    INT64,
    NS,
    UINT8,
    UINT32,
    XmlRejected,
    add,
    add_link,
    checked,
    root,
)

XSI = "http://www.w3.org/2001/XMLSchema-instance"

ENCODING_SEP_XML = 0  # Subscription.encoding: 0 application/sep+xml, 1 application/sep-exi

# Notification.status (2018 XSD annotation); 1-4 all cancel the subscription.
NOTIFICATION_DEFAULT = 0
NOTIFICATION_CANCELLED = 1  # no additional information
NOTIFICATION_RESOURCE_MOVED = 2  # newResourceURI says where
NOTIFICATION_DEFINITION_CHANGED = 3  # e.g. a new version of IEEE 2030.5
NOTIFICATION_RESOURCE_DELETED = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition(Record):
    """Notify only when a reading leaves [lower, upper]; attributeIdentifier 0 = reading value."""

    attribute_identifier: int = xsd("attributeIdentifier", Integer(UINT8), required=True)
    lower_threshold: int = xsd("lowerThreshold", Integer(INT48), required=True)
    upper_threshold: int = xsd("upperThreshold", Integer(INT48), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription(Record):
    """A device's subscription. ``limit`` caps the list items a notification carries (0: a
    bare change notification); ``level`` is the schema level, e.g. "+S1"."""

    TAG: ClassVar[str] = "Subscription"

    subscribed_resource: str = xsd("subscribedResource", Text(None), required=True)
    condition: Condition | None = xsd("Condition", One(Condition))
    encoding: int = xsd("encoding", Integer(UINT8), required=True)
    level: str = xsd("level", Text(16), required=True)
    limit: int = xsd("limit", Integer(UINT32), required=True)
    notification_uri: str = xsd("notificationURI", Text(None, absolute=True), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Record):
    """A device's answer to an event; LFDI and subject (the event's mRID) are upper-cased.

    ``status`` per 2030.5 Table 27 (for DER: 1 received, 2 started, 3 completed, 4 opted out,
    6 cancelled, 7 superseded...); the routes interpret it, this module only carries it.
    """

    TAG: ClassVar[str] = "Response"

    created_date_time: int | None = xsd("createdDateTime", Integer(INT64))
    end_device_lfdi: str = xsd("endDeviceLFDI", HexId(40), required=True)
    status: int | None = xsd("status", Integer(UINT8))
    subject: str = xsd("subject", HexId(32), required=True)


# -- parsers (parse the body with ``xmlio.parse`` first; they raise XmlRejected) ------------


def parse_subscription(element: etree._Element) -> Subscription:
    """A posted Subscription; only sep+xml notifications (encoding 0) are offered."""
    value = Subscription.parse(element)
    if value.encoding != ENCODING_SEP_XML:
        raise XmlRejected(
            f"Subscription/encoding {value.encoding} is not supported: only 0 (application/sep+xml)"
        )
    return value


def parse_response(element: etree._Element) -> Response:
    """A posted DERControlResponse (or a plain Response)."""
    if element.tag not in {f"{{{NS}}}DERControlResponse", f"{{{NS}}}Response"}:
        raise XmlRejected(
            f"expected a DERControlResponse or a Response, not {etree.QName(element).localname}"
        )
    return Response.read(element)


# -- builders (ValueError on values the XSD forbids) ---------------------------------------

SUBSCRIPTION_LIST = ListShape(
    "SubscriptionList", "Subscription", subscribable=False, poll_rate=True
)
RESPONSE_LIST = ListShape("ResponseList", "Response", subscribable=False, poll_rate=False)
RESPONSE_SET_LIST = ListShape("ResponseSetList", "ResponseSet", subscribable=False, poll_rate=True)


def subscription(*, href: str, value: Subscription) -> etree._Element:
    return value.render(href=href)


def subscription_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
) -> etree._Element:
    return build_list(
        SUBSCRIPTION_LIST, href=href, all=all, results=results, items=items, poll_rate=poll_rate
    )


def notification(
    *,
    subscribed_resource: str,
    subscription_uri: str,
    status: int,
    resource: etree._Element | None,
    new_resource_uri: str | None = None,
) -> etree._Element:
    """A Notification to POST to a subscriber; ``resource`` is any built resource element.

    The resource is copied (the caller's element is left alone) into the abstract ``Resource``
    element with its type in ``xsi:type``. ``new_resource_uri`` is required when ``status`` is
    NOTIFICATION_RESOURCE_MOVED and refused otherwise.
    """
    checked(status, (0, 255), "Notification.status")
    if (status == NOTIFICATION_RESOURCE_MOVED) != (new_resource_uri is not None):
        raise ValueError("newResourceURI is given exactly when status is 2 (resource moved)")
    for name, uri in (("subscriptionURI", subscription_uri), ("newResourceURI", new_resource_uri)):
        if uri is not None and not is_absolute_uri(uri):
            raise ValueError(f"Notification.{name} must be an absolute http(s) URI, not {uri!r}")
    element = root("Notification")
    add(element, "subscribedResource", subscribed_resource)
    if new_resource_uri is not None:
        add(element, "newResourceURI", new_resource_uri)
    if resource is not None:
        element.append(_as_resource(resource))
    add(element, "status", status)
    add(element, "subscriptionURI", subscription_uri)
    return element


def _as_resource(resource: etree._Element) -> etree._Element:
    qname = etree.QName(resource)
    if qname.namespace != NS:
        raise ValueError(f"a notified resource must be a 2030.5 element, not {resource.tag}")
    typed = etree.Element(f"{{{NS}}}Resource", nsmap={None: NS, "xsi": XSI})
    typed.set(f"{{{XSI}}}type", qname.localname)
    for name, value in resource.attrib.items():
        typed.set(name, value)
    for child in resource:
        typed.append(copy.deepcopy(child))
    return typed


def response(
    *,
    href: str,
    value: Response,
    tag: Literal["Response", "DERControlResponse"] = "Response",
) -> etree._Element:
    """A Response; as ``tag="DERControlResponse"`` for a resource of that type (a ResponseList
    item must stay ``Response``)."""
    element = root(tag, href=href)
    value.write(element, tag)
    return element


def response_list(
    *, href: str, all: int, results: int, items: Sequence[etree._Element]
) -> etree._Element:
    return build_list(RESPONSE_LIST, href=href, all=all, results=results, items=items)


def response_set(
    *,
    href: str,
    mrid: str,
    description: str | None,
    response_list_href: str,
    response_list_all: int,
) -> etree._Element:
    """ResponseSet: identity, then the link to its ResponseList."""
    element = root("ResponseSet", href=href)
    add_identity(element, mrid=mrid, description=description)
    add_link(element, "ResponseListLink", response_list_href, response_list_all)
    return element


def response_set_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
) -> etree._Element:
    return build_list(
        RESPONSE_SET_LIST, href=href, all=all, results=results, items=items, poll_rate=poll_rate
    )


__all__ = [
    "ENCODING_SEP_XML",
    "NOTIFICATION_CANCELLED",
    "NOTIFICATION_DEFAULT",
    "NOTIFICATION_DEFINITION_CHANGED",
    "NOTIFICATION_RESOURCE_DELETED",
    "NOTIFICATION_RESOURCE_MOVED",
    "RESPONSE_LIST",
    "RESPONSE_SET_LIST",
    "SUBSCRIPTION_LIST",
    "Condition",
    "Response",
    "Subscription",
    "notification",
    "parse_response",
    "parse_subscription",
    "response",
    "response_list",
    "response_set",
    "response_set_list",
    "subscription",
    "subscription_list",
]
