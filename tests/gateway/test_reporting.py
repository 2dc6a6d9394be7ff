"""Device reporting over HTTPS: DER resources, mirror metering, log events and responses; each
post stored, readable back, and an event on the telemetry log."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}
NS = 'xmlns="urn:ieee:std:2030.5:ns"'


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    server.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    edev = {}
    for name, aggregator in (("device1", None), ("device2", "aggregator1")):
        lfdi = server.identity(name).lfdi
        body = {"lfdi": lfdi, **({"aggregator": aggregator} if aggregator else {})}
        edev[name] = server.admin_ok("POST", "/devices", json=body)["edevId"]
        server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["p1"]}])
    return {"edev": edev}


def telemetry(server: Server, kind: str) -> list[dict[str, Any]]:
    events = server.admin_ok("GET", "/telemetry", params={"limit": 10000})["events"]
    return [e for e in events if e["type"] == kind]


CAPABILITY = (
    f"<DERCapability {NS}><modesSupported>500040</modesSupported>"
    "<rtgMaxVA><multiplier>3</multiplier><value>5</value></rtgMaxVA>"
    "<rtgMaxW><multiplier>3</multiplier><value>5</value></rtgMaxW><type>4</type></DERCapability>"
)
SETTINGS = (
    f"<DERSettings {NS}><modesEnabled>400000</modesEnabled><setGradW>100</setGradW>"
    "<setMaxW><multiplier>3</multiplier><value>4</value></setMaxW>"
    "<updatedTime>1767225600</updatedTime></DERSettings>"
)
STATUS = (
    f"<DERStatus {NS}><genConnectStatus><dateTime>1767225600</dateTime><value>01</value>"
    "</genConnectStatus><inverterStatus><dateTime>1767225600</dateTime><value>4</value>"
    "</inverterStatus><readingTime>1767225600</readingTime></DERStatus>"
)
AVAILABILITY = (
    f"<DERAvailability {NS}><readingTime>1767225600</readingTime>"
    "<statWAvail><multiplier>3</multiplier><value>2</value></statWAvail></DERAvailability>"
)


def test_der_resources_are_stored_and_returned(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    edev = world["edev"]["device1"]
    der_list = client.get(f"/edev/{edev}/der", params={"l": 5})
    assert der_list.status_code == 200 and 'all="1"' in der_list.text
    der = f"/edev/{edev}/der/1"
    assert client.get(f"{der}/ders").status_code == 404  # nothing posted yet
    for suffix, body in (
        ("dercap", CAPABILITY),
        ("derg", SETTINGS),
        ("ders", STATUS),
        ("dera", AVAILABILITY),
    ):
        assert client.put(f"{der}/{suffix}", content=body, headers=SEP).status_code == 204
        back = client.get(f"{der}/{suffix}")
        assert back.status_code == 200
        assert back.text.strip().replace(f' href="{der}/{suffix}"', "") == body
    status = telemetry(server, "der_status")[-1]
    assert status["lfdi"] == server.identity("device1").lfdi
    assert status["data"]["inverterStatus"] == {"dateTime": 1767225600, "value": 4}
    capability = telemetry(server, "der_capability")[-1]["data"]
    assert capability["rtgMaxW"] == {"multiplier": 3, "value": 5}
    view = server.admin_ok("GET", f"/devices/{server.identity('device1').lfdi}/telemetry")
    assert view["der"]["settings"]["value"]["setGradW"] == 100


def test_bad_der_bodies_are_refused(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    der = f"/edev/{world['edev']['device1']}/der/1"
    missing = (
        f"<DERStatus {NS}><genConnectStatus><dateTime>1</dateTime><value>01</value>"
        "</genConnectStatus></DERStatus>"
    )
    response = client.put(f"{der}/ders", content=missing, headers=SEP)
    assert response.status_code == 400 and "readingTime" in response.text
    assert client.put(f"{der}/dercap", content=STATUS, headers=SEP).status_code == 400  # wrong root
    assert (
        client.put(
            f"{der}/ders", content=STATUS, headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )


def test_der_of_another_device_is_404_but_its_aggregator_may_post(
    server: Server, world: dict[str, Any]
) -> None:
    other = f"/edev/{world['edev']['device2']}/der/1/ders"
    assert server.client("device1").put(other, content=STATUS, headers=SEP).status_code == 404
    assert server.client("aggregator1").put(other, content=STATUS, headers=SEP).status_code == 204


def mup_body(server: Server, name: str, mrid: str, extra: str = "") -> str:
    return (
        f"<MirrorUsagePoint {NS}><mRID>{mrid}</mRID><description>site</description>"
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{server.identity(name).lfdi}</deviceLFDI>{extra}</MirrorUsagePoint>"
    )


READING_TYPE = (
    "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><commodity>1</commodity>"
    "<dataQualifier>2</dataQualifier><flowDirection>1</flowDirection><intervalLength>300</intervalLength>"
    "<kind>37</kind><phase>128</phase><powerOfTenMultiplier>-1</powerOfTenMultiplier><uom>38</uom></ReadingType>"
)


def test_mirror_usage_point_and_readings(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    mrid = "AA00000000000000000000000000BB01"
    created = client.post("/mup", content=mup_body(server, "device1", mrid), headers=SEP)
    assert created.status_code == 201
    location = created.headers["location"]
    again = client.post("/mup", content=mup_body(server, "device1", mrid), headers=SEP)
    assert again.headers["location"] == location  # same mRID, same device: updated, not duplicated
    reading = (
        f"<MirrorMeterReading {NS}><mRID>CC00000000000000000000000000DD01</mRID>"
        "<description>avg W phase A</description>"
        "<Reading><timePeriod><duration>300</duration><start>1767225600</start></timePeriod>"
        f"<value>12345</value></Reading>{READING_TYPE}</MirrorMeterReading>"
    )
    assert client.post(location, content=reading, headers=SEP).status_code == 201
    later = (
        f'<MirrorMeterReadingList {NS} all="1" results="1"><MirrorMeterReading>'
        "<mRID>CC00000000000000000000000000DD01</mRID><MirrorReadingSet>"
        "<mRID>EE00000000000000000000000000FF01</mRID><timePeriod><duration>600</duration>"
        "<start>1767225900</start></timePeriod>"
        "<Reading><timePeriod><duration>300</duration><start>1767225900</start></timePeriod><value>100</value></Reading>"
        "<Reading><timePeriod><duration>300</duration><start>1767226200</start></timePeriod><value>200</value></Reading>"
        "</MirrorReadingSet></MirrorMeterReading></MirrorMeterReadingList>"
    )
    assert client.post(location, content=later, headers=SEP).status_code == 201
    readings = [e["data"] for e in telemetry(server, "reading")]
    assert [(r["quantity"], r["value"], r["time"], r["interval"]) for r in readings[-3:]] == [
        ("active_power_forward_avg_phase_a", 1234.5, 1767225600, 300),
        ("active_power_forward_avg_phase_a", 10.0, 1767225900, 300),  # ReadingType remembered
        ("active_power_forward_avg_phase_a", 20.0, 1767226200, 300),
    ]
    assert readings[-1]["unit"] == "W" and readings[-1]["lfdi"] == server.identity("device1").lfdi
    mup = client.get(location)
    assert "<value>200</value>" in mup.text and "<uom>38</uom>" in mup.text
    assert "postRate" in mup.text or "<postRate>" in mup.text
    assert client.get("/mup", params={"l": 10}).text.count("<MirrorUsagePoint ") == 1


def test_a_mirror_for_someone_else_is_refused(server: Server, world: dict[str, Any]) -> None:
    body = mup_body(server, "device2", "AA00000000000000000000000000BB02")
    assert server.client("device1").post("/mup", content=body, headers=SEP).status_code == 403
    assert server.client("aggregator1").post("/mup", content=body, headers=SEP).status_code == 201


def log_event(code: int, event_id: int, created: int) -> str:
    return (
        f"<LogEvent {NS}><createdDateTime>{created}</createdDateTime><functionSet>11</functionSet>"
        f"<logEventCode>{code}</logEventCode><logEventID>{event_id}</logEventID>"
        "<logEventPEN>0</logEventPEN><profileID>2</profileID></LogEvent>"
    )


def test_alarms_and_returns_to_normal(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    lel = f"/edev/{world['edev']['device1']}/lel"
    assert client.post(lel, content=log_event(2, 1, 1767225600), headers=SEP).status_code == 201
    assert client.post(lel, content=log_event(3, 2, 1767225700), headers=SEP).status_code == 201
    listing = client.get(lel, params={"l": 10})
    assert listing.text.index("<logEventID>2</logEventID>") < listing.text.index(
        "<logEventID>1</logEventID>"
    )
    events = [e["data"] for e in telemetry(server, "log_event")][-2:]
    assert [e["alarm"]["returnToNormal"] for e in events] == [False, True]
    assert "OVER_VOLTAGE" in events[0]["alarm"]["name"]
    assert (
        server.client("device1")
        .get(f"/edev/{world['edev']['device1']}")
        .text.count("LogEventListLink")
        == 1
    )


def response(server: Server, name: str, mrid: str, status: int) -> str:
    lfdi = server.identity(name).lfdi
    return (
        f"<DERControlResponse {NS}><createdDateTime>{int(time.time())}</createdDateTime>"
        f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status><subject>{mrid}</subject>"
        "</DERControlResponse>"
    )


def test_responses_are_validated_stored_and_shown_beside_the_lifecycle(
    server: Server, world: dict[str, Any]
) -> None:
    created = server.admin_ok(
        "POST",
        "/programs/p1/controls",
        json={"start": int(time.time()) + 3600, "duration": 60, "base": {"opModConnect": False}},
    )
    mrid = created["mRIDs"][0]
    client = server.client("device1")
    assert (
        client.post(
            "/rsps/p1/rsp", content=response(server, "device1", mrid, 1), headers=SEP
        ).status_code
        == 201
    )
    bad_subject = response(server, "device1", "00" * 16, 1)
    assert client.post("/rsps/p1/rsp", content=bad_subject, headers=SEP).status_code == 400
    not_mine = response(server, "device2", mrid, 1)
    assert client.post("/rsps/p1/rsp", content=not_mine, headers=SEP).status_code == 400
    unknown = response(server, "device1", mrid, 99)
    assert client.post("/rsps/p1/rsp", content=unknown, headers=SEP).status_code == 400
    assert (
        server.client("aggregator1").post("/rsps/p1/rsp", content=not_mine, headers=SEP).status_code
        == 201
    )
    view = server.admin_ok(
        "GET", f"/devices/{server.identity('device1').lfdi}/responses", params={"mRID": mrid}
    )
    assert [r["status"] for r in view["expected"]] == [1]
    assert [r["status"] for r in view["posted"]] == [1]
    listing = client.get("/rsps/p1/rsp", params={"l": 10})
    assert listing.status_code == 200 and mrid in listing.text
    assert client.get("/rsps", params={"l": 5}).status_code == 200
    assert telemetry(server, "response")[-1]["data"]["subject"] == mrid


def test_post_rates(server: Server, world: dict[str, Any]) -> None:
    server.admin_ok("PUT", "/post-rates", json={"edev": 60})
    assert (
        "<postRate>60</postRate>"
        in server.client("device1").get(f"/edev/{world['edev']['device1']}").text
    )
