"""The csip-aus profile over real mTLS, beside the default csip profile (docs/profiles.md).

Two servers: ``aus`` (``--profile csip-aus``, every body validated against CSIP-AUS's schema,
which extends the 2018 XSD) and the module's default ``server`` (csip, the 2018 XSD). The
world in each: program ``site``, device1 and device2 registered out of band in it, aggregator1
managing device3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from gateway.pki import Pki
from gateway.sep_aus import nmi_checksum, valid_nmi
from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}
NS = "urn:ieee:std:2030.5:ns"
AUS = "https://csipaus.org/ns"
Q = {"s": NS, "au": AUS}
NMI = "41020000002"  # ten characters and AEMO's checksum digit


@pytest.fixture(scope="module")
def aus(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(
        server_pki,
        tmp_path_factory.mktemp("aus") / "data",
        "--profile",
        "csip-aus",
        schema_name="csipaus-core.xsd",
    ) as running:
        yield running


def _world(server: Server) -> dict[str, int]:
    server.admin_ok("PUT", "/programs/site", json={"primacy": 1})
    aggregator = server.identity("aggregator1")
    server.admin_ok("PUT", "/aggregators/aggregator1", json={"lfdi": aggregator.lfdi})
    for name in ("device1", "device2"):
        server.admin_ok("POST", "/devices", json={"lfdi": server.identity(name).lfdi})
    server.admin_ok(
        "POST",
        "/devices",
        json={"lfdi": server.identity("device3").lfdi, "aggregator": "aggregator1"},
    )
    for name in ("device1", "device2", "device3"):
        server.admin_ok(
            "PUT",
            f"/devices/{server.identity(name).lfdi}/fsas",
            json=[{"description": "site", "programs": ["site"]}],
        )
    return {
        name: server.admin_ok("GET", f"/devices/{server.identity(name).lfdi}")["edevId"]
        for name in ("device1", "device2", "device3", "aggregator1")
    }


@pytest.fixture(scope="module")
def aus_edev(aus: Server) -> dict[str, int]:
    return _world(aus)


@pytest.fixture(scope="module")
def csip_edev(server: Server) -> dict[str, int]:
    return _world(server)


def xml(response: Any) -> etree._Element:
    assert response.status_code == 200, (response.status_code, response.text)
    return etree.fromstring(response.content)


def connection_point(value: str, tag: str = "connectionPointId") -> str:
    return f'<ConnectionPoint xmlns="{AUS}"><{tag}>{value}</{tag}></ConnectionPoint>'


# -- XML ------------------------------------------------------------------------------------


def test_bodies_have_no_xml_declaration(server: Server, csip_edev: dict[str, int]) -> None:
    body = server.client("device1").get("/dcap").content
    assert body.startswith(b"<DeviceCapability ")


# -- DERControlBase limits ------------------------------------------------------------------


def test_aus_limits_are_served_in_the_csipaus_namespace(
    aus: Server, aus_edev: dict[str, int]
) -> None:
    limit = {"value": 15, "multiplier": 2}
    created = aus.admin.post(
        "/programs/site/controls",
        json={"start": 2_000_000_000, "duration": 300, "base": {"opModExpLimW": limit}},
    )
    assert created.status_code == 201, created.text
    controls = xml(aus.client("device1").get("/derp/site/derc", params={"l": 10}))
    base = controls.find("s:DERControl/s:DERControlBase", Q)
    limit_element = base.find("au:opModExpLimW", Q)
    assert limit_element is not None
    assert limit_element.findtext("s:multiplier", namespaces=Q) == "2"
    assert limit_element.findtext("s:value", namespaces=Q) == "15"


def test_the_csip_profile_refuses_aus_limits(server: Server, csip_edev: dict[str, int]) -> None:
    limit = {"value": 15, "multiplier": 2}
    for path, method, body in (
        ("/programs/site/controls", "POST", {"start": 2_000_000_000, "duration": 60}),
        ("/programs/site/default", "PUT", {}),
    ):
        response = server.admin.request(
            method, path, json={**body, "base": {"opModImpLimW": limit}}
        )
        assert response.status_code == 400
        assert "csip-aus profile" in response.text


def test_a_program_without_default_links_an_empty_one_under_aus(
    aus: Server, server: Server, aus_edev: dict[str, int], csip_edev: dict[str, int]
) -> None:
    program = xml(aus.client("device1").get("/derp/site"))
    assert program.find("s:DefaultDERControlLink", Q).get("href") == "/derp/site/dderc"
    default = xml(aus.client("device1").get("/derp/site/dderc"))
    assert len(default.find("s:DERControlBase", Q)) == 0
    assert (
        xml(server.client("device1").get("/derp/site")).find("s:DefaultDERControlLink", Q) is None
    )
    assert server.client("device1").get("/derp/site/dderc").status_code == 404


# -- ConnectionPoint ------------------------------------------------------------------------


def test_nmi_checksum_and_format() -> None:
    assert nmi_checksum("4102000000") == 2
    assert valid_nmi("41020000002") and valid_nmi("41020000026") and valid_nmi("4102000000")
    assert not valid_nmi("41020000003")  # wrong checksum
    assert not valid_nmi("NOTAVALIDID")  # O and I are never used in an NMI
    assert not valid_nmi("4102")


def test_a_device_sets_its_connection_point(aus: Server, aus_edev: dict[str, int]) -> None:
    client = aus.client("device1")
    edev = xml(client.get(f"/edev/{aus_edev['device1']}"))
    href = edev.find("au:ConnectionPointLink", Q).get("href")
    assert client.get(href).status_code == 404  # none yet
    put = client.put(href, content=connection_point(NMI), headers=SEP)
    assert (put.status_code, put.headers["location"]) == (204, href)
    point = xml(client.get(href))
    assert point.tag == f"{{{AUS}}}ConnectionPoint"
    assert point.findtext("au:connectionPointId", namespaces=Q) == NMI
    legacy = client.put(href, content=connection_point("41020000026", "id"), headers=SEP)
    assert legacy.status_code == 204  # CSIP-AUS v1.1's element name
    assert xml(client.get(href)).findtext("au:connectionPointId", namespaces=Q) == "41020000026"


def test_an_invalid_nmi_is_refused(aus: Server, aus_edev: dict[str, int]) -> None:
    href = f"/edev/{aus_edev['device2']}/cp"
    response = aus.client("device2").put(href, content=connection_point("NOTAVALIDID"), headers=SEP)
    assert response.status_code == 400
    assert aus.client("device2").get(href).status_code == 404


def test_only_the_device_or_its_aggregator_sets_a_connection_point(
    aus: Server, aus_edev: dict[str, int]
) -> None:
    other = aus.client("device2").put(
        f"/edev/{aus_edev['device1']}/cp", content=connection_point(NMI), headers=SEP
    )
    assert other.status_code == 404
    managed = aus.client("aggregator1").put(
        f"/edev/{aus_edev['device3']}/cp", content=connection_point(NMI), headers=SEP
    )
    assert managed.status_code == 204


def test_the_csip_profile_has_no_connection_point(
    server: Server, csip_edev: dict[str, int]
) -> None:
    client = server.client("device1")
    edev = xml(client.get(f"/edev/{csip_edev['device1']}"))
    assert edev.find("au:ConnectionPointLink", Q) is None
    put = client.put(f"/edev/{csip_edev['device1']}/cp", content=connection_point(NMI), headers=SEP)
    assert put.status_code == 404


# -- DERCapability and DERSettings ----------------------------------------------------------

SETTINGS = (
    f'<DERSettings xmlns="{NS}" xmlns:csipaus="{AUS}"><modesEnabled>0C</modesEnabled>'
    "<setGradW>1000</setGradW><setMaxW><multiplier>0</multiplier><value>10000</value></setMaxW>"
    "{updated}<csipaus:doeModesEnabled>03</csipaus:doeModesEnabled></DERSettings>"
)


def test_doe_modes_are_stored_and_echoed_under_aus(aus: Server, aus_edev: dict[str, int]) -> None:
    client = aus.client("device1")
    href = f"/edev/{aus_edev['device1']}/der/1/derg"
    body = SETTINGS.format(updated="<updatedTime>1767225600</updatedTime>")
    assert client.put(href, content=body, headers=SEP).status_code == 204
    back = xml(client.get(href))
    assert back.findtext("s:modesEnabled", namespaces=Q) == "0C"  # as sent, not 0000000C
    assert back.findtext("au:doeModesEnabled", namespaces=Q) == "03"


def test_incomplete_der_settings_are_refused(aus: Server, aus_edev: dict[str, int]) -> None:
    href = f"/edev/{aus_edev['device2']}/der/1/derg"
    response = aus.client("device2").put(href, content=SETTINGS.format(updated=""), headers=SEP)
    assert response.status_code == 400
    assert "updatedTime is missing" in response.text
    assert aus.client("device2").get(href).status_code == 404


def test_the_csip_profile_drops_doe_modes(server: Server, csip_edev: dict[str, int]) -> None:
    client = server.client("device1")
    href = f"/edev/{csip_edev['device1']}/der/1/derg"
    body = SETTINGS.format(updated="<updatedTime>1767225600</updatedTime>")
    assert client.put(href, content=body, headers=SEP).status_code == 204
    back = xml(client.get(href))
    assert back.find("au:doeModesEnabled", Q) is None


# -- behaviour common to both profiles ------------------------------------------------------


def test_an_aggregator_finds_one_subscription_list(aus: Server, aus_edev: dict[str, int]) -> None:
    devices = xml(aus.client("aggregator1").get("/edev", params={"l": 10}))
    links = [
        (d.findtext("s:lFDI", namespaces=Q), d.find("s:SubscriptionListLink", Q) is not None)
        for d in devices.findall("s:EndDevice", Q)
    ]
    assert sorted(links) == sorted(
        [
            (aus.identity("aggregator1").lfdi, True),
            (aus.identity("device3").lfdi, False),
        ]
    )


def mup(lfdi: str, mup_mrid: str, mmr_mrid: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{NS}"><mRID>{mup_mrid}</mRID><roleFlags>03</roleFlags>'
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mmr_mrid}</mRID>"
        "<ReadingType><uom>38</uom></ReadingType></MirrorMeterReading></MirrorUsagePoint>"
    )


def test_a_meter_reading_of_another_mirror_is_refused(
    server: Server, csip_edev: dict[str, int]
) -> None:
    device1, device2 = server.identity("device1").lfdi, server.identity("device2").lfdi
    first = server.client("device2").post("/mup", content=mup(device2, "AA01", "BB01"), headers=SEP)
    assert first.status_code == 201
    again = server.client("device2").post("/mup", content=mup(device2, "AA01", "BB01"), headers=SEP)
    assert again.status_code == 201  # its own mirror: an update
    stolen = server.client("device1").post(
        "/mup", content=mup(device1, "AA02", "BB01"), headers=SEP
    )
    assert stolen.status_code == 409
