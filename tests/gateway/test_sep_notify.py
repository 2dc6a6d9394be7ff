"""Subscriptions, notifications and responses (gateway/sep_notify.py): what a device posts is read
and refused with reasons, what the server sends is XSD-valid, including a Notification that
carries a whole resource under an xsi:type."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from gateway import sep_der, sep_notify
from gateway.sep_notify import Condition, Response, Subscription
from gateway.xmlio import NS, XmlRejected, parse, serialize
from tests.gateway.record_samples import records, sample
from tests.xsd import assert_valid

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def through_the_wire(element: etree._Element) -> etree._Element:
    body = serialize(element)
    assert_valid(body)
    return parse(body)


def body(tag: str, inner: str) -> etree._Element:
    return parse(f'<{tag} xmlns="{NS}">{inner}</{tag}>'.encode())


def children(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


# -- subscriptions -------------------------------------------------------------------------

SUBSCRIBE = (
    "<subscribedResource>/edev/1/fsa/1/derp/1/derc</subscribedResource>"
    "<encoding>0</encoding><level>+S1</level><limit>10</limit>"
    "<notificationURI>https://gw.example.com/ntfy/1</notificationURI>"
)


def test_a_device_subscription_is_read() -> None:
    value = sep_notify.parse_subscription(body("Subscription", SUBSCRIBE))
    assert value == Subscription(
        subscribed_resource="/edev/1/fsa/1/derp/1/derc",
        encoding=0,
        level="+S1",
        limit=10,
        notification_uri="https://gw.example.com/ntfy/1",
    )


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_subscription_renders_valid_and_parses_back(full: bool) -> None:
    value = sample(Subscription, full=full)
    element = through_the_wire(sep_notify.subscription(href="/edev/1/sub/1", value=value))
    assert Subscription.parse(element) == value
    if full:
        assert children(element)[:3] == ["subscribedResource", "Condition", "encoding"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(Subscription))
def test_any_subscription_round_trips_through_xml_and_json(value: Subscription) -> None:
    element = through_the_wire(sep_notify.subscription(href="/edev/1/sub/1", value=value))
    assert Subscription.parse(element) == value
    assert Subscription.from_json(json.loads(json.dumps(value.to_json()))) == value


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (SUBSCRIBE.replace("<encoding>0", "<encoding>1"), "encoding 1 is not supported"),
        (SUBSCRIBE.replace("https://gw.example.com", ""), "must be an absolute http"),
        (SUBSCRIBE.replace("+S1", "+S1" * 6), "limited to 16 characters"),
        (SUBSCRIBE.replace("<limit>10</limit>", ""), "Subscription/limit is missing"),
        (
            SUBSCRIBE.replace(
                "<encoding>",
                "<Condition><attributeIdentifier>0</attributeIdentifier>"
                "<lowerThreshold>1</lowerThreshold></Condition><encoding>",
            ),
            "Condition/upperThreshold is missing",
        ),
    ],
)
def test_bad_subscriptions_are_refused_with_a_reason(inner: str, reason: str) -> None:
    with pytest.raises(XmlRejected, match=reason):
        sep_notify.parse_subscription(body("Subscription", inner))


def test_subscription_list_is_valid_with_poll_rate() -> None:
    items = [sep_notify.subscription(href="/edev/1/sub/1", value=sample(Subscription, full=True))]
    element = sep_notify.subscription_list(
        href="/edev/1/sub", all=1, results=1, items=items, poll_rate=900
    )
    assert children(through_the_wire(element)) == ["Subscription"]


# -- notifications -------------------------------------------------------------------------


def control_list() -> etree._Element:
    control = sep_der.der_control(
        href="/derp/1/derc/A1",
        mrid="A1",
        description=None,
        creation_time=1_700_000_000,
        current_status=0,
        status_time=1_700_000_000,
        potentially_superseded=False,
        potentially_superseded_time=None,
        reason=None,
        start=1_700_000_600,
        duration=300,
        randomize_start=None,
        randomize_duration=None,
        reply_to="/rsps/1/rsp",
        response_required=3,
        device_category=None,
        base=(("opModMaxLimW", 5000),),
        ramp_tms=None,
        curve_href=lambda mrid: f"/derp/1/dc/{mrid}",
    )
    return sep_der.der_control_list(
        href="/derp/1/derc", all=1, results=1, items=[control], subscribable=1
    )


def test_a_notification_carries_the_resource_under_its_xsi_type() -> None:
    resource = control_list()
    element = through_the_wire(
        sep_notify.notification(
            subscribed_resource="/derp/1/derc",
            subscription_uri="https://utility.example/edev/1/sub/1",
            status=sep_notify.NOTIFICATION_DEFAULT,
            resource=resource,
        )
    )
    assert children(element) == ["subscribedResource", "Resource", "status", "subscriptionURI"]
    carried = element.find(f"{{{NS}}}Resource")
    assert carried is not None
    assert carried.get(XSI_TYPE) == "DERControlList"
    assert (carried.get("all"), carried.get("results"), carried.get("href")) == (
        "1",
        "1",
        "/derp/1/derc",
    )
    assert children(carried) == ["DERControl"]
    assert resource.tag == f"{{{NS}}}DERControlList"  # the caller's element is untouched


def test_the_xsd_checks_the_carried_type() -> None:
    element = sep_notify.notification(
        subscribed_resource="/derp/1/derc",
        subscription_uri="https://utility.example/edev/1/sub/1",
        status=0,
        resource=control_list(),
    )
    carried = element.find(f"{{{NS}}}Resource")
    assert carried is not None
    carried.set(XSI_TYPE, "DERProgramList")  # a DERProgramList cannot hold DERControls
    with pytest.raises(AssertionError, match="not valid"):
        assert_valid(serialize(element))


def test_cancellation_notifications_are_valid_without_a_resource() -> None:
    codes = (
        sep_notify.NOTIFICATION_DEFAULT,
        sep_notify.NOTIFICATION_CANCELLED,
        sep_notify.NOTIFICATION_RESOURCE_MOVED,
        sep_notify.NOTIFICATION_DEFINITION_CHANGED,
        sep_notify.NOTIFICATION_RESOURCE_DELETED,
    )
    assert codes == (0, 1, 2, 3, 4)  # Notification.status in the 2018 XSD
    moved = sep_notify.notification(
        subscribed_resource="/derp/1/derc",
        subscription_uri="https://utility.example/edev/1/sub/1",
        status=sep_notify.NOTIFICATION_RESOURCE_MOVED,
        resource=None,
        new_resource_uri="https://utility.example/derp/2/derc",
    )
    assert children(through_the_wire(moved)) == [
        "subscribedResource",
        "newResourceURI",
        "status",
        "subscriptionURI",
    ]
    deleted = sep_notify.notification(
        subscribed_resource="/derp/1/derc",
        subscription_uri="https://utility.example/edev/1/sub/1",
        status=sep_notify.NOTIFICATION_RESOURCE_DELETED,
        resource=None,
    )
    through_the_wire(deleted)


def test_notification_refuses_what_2030_5_forbids() -> None:
    common: dict[str, Any] = {"subscribed_resource": "/derp/1/derc", "resource": None}
    with pytest.raises(ValueError, match="newResourceURI"):
        sep_notify.notification(**common, subscription_uri="https://u.example/s", status=2)
    with pytest.raises(ValueError, match="newResourceURI"):
        sep_notify.notification(
            **common,
            subscription_uri="https://u.example/s",
            status=0,
            new_resource_uri="https://u.example/x",
        )
    with pytest.raises(ValueError, match="subscriptionURI must be an absolute"):
        sep_notify.notification(**common, subscription_uri="/edev/1/sub/1", status=0)
    with pytest.raises(ValueError, match=r"2030\.5 element"):
        sep_notify.notification(
            subscribed_resource="/x",
            subscription_uri="https://u.example/s",
            status=0,
            resource=etree.Element("DERControlList"),
        )


# -- responses -----------------------------------------------------------------------------


def test_a_der_control_response_is_read_with_identifiers_upper_cased() -> None:
    value = sep_notify.parse_response(
        body(
            "DERControlResponse",
            f"<createdDateTime>1700000601</createdDateTime>"
            f"<endDeviceLFDI>{LFDI.lower()}</endDeviceLFDI><status>2</status>"
            "<subject>a1b2</subject>",
        )
    )
    assert value == Response(
        created_date_time=1_700_000_601, end_device_lfdi=LFDI, status=2, subject="A1B2"
    )


def test_a_plain_response_root_is_accepted_too() -> None:
    value = sep_notify.parse_response(
        body("Response", f"<endDeviceLFDI>{LFDI}</endDeviceLFDI><subject>01</subject>")
    )
    assert (value.status, value.created_date_time) == (None, None)


@pytest.mark.parametrize(
    ("tag", "inner", "reason"),
    [
        ("DERControlResponse", f"<endDeviceLFDI>{LFDI}</endDeviceLFDI>", "subject is missing"),
        ("DERControlResponse", "<subject>01</subject>", "endDeviceLFDI is missing"),
        (
            "DERControlResponse",
            f"<endDeviceLFDI>{LFDI}00</endDeviceLFDI><subject>01</subject>",
            "at most 40 digits",
        ),
        (
            "DERControlResponse",
            f"<endDeviceLFDI>{LFDI}</endDeviceLFDI><status>256</status><subject>01</subject>",
            "status must be an integer",
        ),
        ("PriceResponse", "<subject>01</subject>", "expected a DERControlResponse or a Response"),
    ],
)
def test_bad_responses_are_refused_with_a_reason(tag: str, inner: str, reason: str) -> None:
    with pytest.raises(XmlRejected, match=reason):
        sep_notify.parse_response(body(tag, inner))


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("tag", ["Response", "DERControlResponse"])
def test_response_renders_valid_and_parses_back(
    full: bool, tag: Literal["Response", "DERControlResponse"]
) -> None:
    value = sample(Response, full=full)
    element = through_the_wire(sep_notify.response(href="/rsps/1/rsp/1", value=value, tag=tag))
    assert etree.QName(element).localname == tag
    assert sep_notify.parse_response(element) == value
    assert Response.from_json(value.to_json()) == value


def test_response_set_and_lists_are_valid() -> None:
    responses = [
        sep_notify.response(href=f"/rsps/1/rsp/{i}", value=sample(Response, full=i == 2))
        for i in (1, 2)
    ]
    through_the_wire(
        sep_notify.response_list(href="/rsps/1/rsp", all=2, results=2, items=responses)
    )
    response_set = sep_notify.response_set(
        href="/rsps/1",
        mrid="0F",
        description="DER responses",
        response_list_href="/rsps/1/rsp",
        response_list_all=2,
    )
    assert children(through_the_wire(response_set)) == ["mRID", "description", "ResponseListLink"]
    through_the_wire(
        sep_notify.response_set_list(
            href="/rsps", all=1, results=1, items=[response_set], poll_rate=900
        )
    )
    with pytest.raises(ValueError, match="holds Response elements"):
        sep_notify.response_list(
            href="/rsps/1/rsp",
            all=1,
            results=1,
            items=[
                sep_notify.response(
                    href="/x", value=sample(Response, full=False), tag="DERControlResponse"
                )
            ],
        )


def test_condition_thresholds_are_int48() -> None:
    value = Condition(attribute_identifier=0, lower_threshold=-(2**47), upper_threshold=2**47 - 1)
    assert Condition.from_json(value.to_json()) == value
    with pytest.raises(ValueError, match="upperThreshold"):
        Condition.from_json({**value.to_json(), "upperThreshold": 2**47})
