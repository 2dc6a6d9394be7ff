"""``--pen``: mRIDs the server makes up end with the operator's IANA PEN (CSIP-AUS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from gateway.admin import made_up_mrid
from gateway.pki import Pki
from tests.gateway.server_fixtures import Server, serve_refuses

NS = {"s": "urn:ieee:std:2030.5:ns"}


def test_made_up_mrids_keep_32_hex_digits_with_or_without_a_pen() -> None:
    plain = made_up_mrid(None, "program", "p1")
    with_pen = made_up_mrid(12345, "program", "p1")
    assert len(plain) == len(with_pen) == 32
    assert with_pen == plain[:24] + "00012345"
    assert made_up_mrid(0, "fsa", "x")[-8:] == "00000000"


@pytest.fixture(scope="module")
def pen_server(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(
        server_pki,
        tmp_path_factory.mktemp("pen") / "data",
        *("--profile", "csip-aus", "--pen", "12345"),
        schema_name="csipaus-core.xsd",
    ) as running:
        yield running


def test_programs_defaults_and_fsas_named_by_the_server_carry_the_pen(pen_server: Server) -> None:
    pen_server.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
    pen_server.admin_ok(
        "PUT",
        "/programs/p1/default",
        json={"base": {"opModExpLimW": {"value": 5, "multiplier": 3}}},
    )
    lfdi = pen_server.identity("device1").lfdi
    edev = pen_server.admin_ok("POST", "/devices", json={"lfdi": lfdi})["edevId"]
    pen_server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["p1"]}])
    client = pen_server.client("device1")
    accept = {"Accept": "application/sep+xml"}
    fsas = etree.fromstring(client.get(f"/edev/{edev}/fsa", headers=accept).content)
    programs = etree.fromstring(client.get(f"/edev/{edev}/fsa/1/derp", headers=accept).content)
    default = etree.fromstring(client.get("/derp/p1/dderc", headers=accept).content)
    mrids = [
        *fsas.xpath("s:FunctionSetAssignments/s:mRID/text()", namespaces=NS),
        *programs.xpath("s:DERProgram/s:mRID/text()", namespaces=NS),
        *default.xpath("s:mRID/text()", namespaces=NS),
    ]
    assert len(mrids) == 3
    assert all(m.endswith("00012345") and len(m) == 32 for m in mrids), mrids


def test_a_mrid_the_utility_gives_is_kept_as_given(pen_server: Server) -> None:
    given = "ABCDEF0123456789ABCDEF0100012345"
    pen_server.admin_ok("PUT", "/programs/p2", json={"primacy": 2, "mRID": given})
    assert pen_server.admin_ok("GET", "/programs/p2")["mRID"] == given


@pytest.mark.parametrize("value", ["abc", "-1", "123456789"])
def test_a_pen_is_at_most_8_digits(value: str) -> None:
    assert "--pen" in serve_refuses("--pen", value)
