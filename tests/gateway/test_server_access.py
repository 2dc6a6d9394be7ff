"""The access matrix: who may see what, by the LFDI of the certificate; nothing leaked."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.gateway.server_fixtures import Server


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, int]:
    server.admin_ok("PUT", "/programs/mine", json={"primacy": 1})
    server.admin_ok("PUT", "/programs/theirs", json={"primacy": 1})
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    server.admin_ok(
        "PUT", "/aggregators/aggregator2", json={"lfdi": server.identity("aggregator2").lfdi}
    )
    edev = {}
    for name, aggregator, program in (
        ("device1", None, "mine"),
        ("device2", "aggregator1", "theirs"),
    ):
        lfdi = server.identity(name).lfdi
        body = {"lfdi": lfdi, **({"aggregator": aggregator} if aggregator else {})}
        edev[name] = server.admin_ok("POST", "/devices", json=body)["edevId"]
        server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": [program]}])
    return edev


def test_a_device_sees_only_itself(server: Server, world: dict[str, int]) -> None:
    client = server.client("device1")
    other = world["device2"]
    for path in (
        f"/edev/{other}",
        f"/edev/{other}/fsa",
        f"/edev/{other}/rg",
        f"/edev/{other}/fsa/1/derp",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert server.identity("device2").lfdi not in response.text
    assert client.get("/derp/theirs").status_code == 404
    assert client.get("/derp/theirs/derc").status_code == 404
    assert client.get("/derp/mine").status_code == 200
    assert client.get("/edev/99999").status_code == 404


def test_an_aggregator_sees_its_devices_not_others(server: Server, world: dict[str, int]) -> None:
    client = server.client("aggregator1")
    assert client.get(f"/edev/{world['device2']}").status_code == 200
    assert client.get("/derp/theirs").status_code == 200
    assert client.get(f"/edev/{world['device1']}").status_code == 404
    assert client.get("/derp/mine").status_code == 404
    other = server.client("aggregator2")
    assert other.get(f"/edev/{world['device2']}").status_code == 404
    assert other.get("/edev", params={"l": 10}).text.count("<EndDevice ") == 1  # itself


def test_unknown_client_gets_403_everywhere(server: Server, world: dict[str, int]) -> None:
    client = server.client("device5")  # a valid certificate, neither registered nor authorized
    for path in ("/dcap", "/tm", "/edev", f"/edev/{world['device1']}", "/derp/mine"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.text.strip() == "unknown client"


def test_certificates_from_another_ca_or_none_are_refused(server: Server, world: dict) -> None:
    for name in ("stranger", None):
        with pytest.raises(httpx.TransportError), httpx.Client(verify=server.tls(name)) as client:
            client.get(f"{server.url}/dcap")


def test_deletion_rights(server: Server, world: dict[str, int]) -> None:
    assert server.client("device1").delete(f"/edev/{world['device1']}").status_code == 403
    assert server.client("aggregator2").delete(f"/edev/{world['device2']}").status_code == 404
    assert server.client("aggregator1").delete(f"/edev/{world['device1']}").status_code == 404


def test_an_lfdi_in_the_url_means_nothing(server: Server, world: dict[str, int]) -> None:
    lfdi = server.identity("device1").lfdi
    client = server.client("device5")
    assert client.get(f"/edev?lfdi={lfdi}").status_code == 403
    assert client.get("/dcap", headers={"x-client-cert": quote("junk")}).status_code == 403


@pytest.fixture(scope="module")
def proxied(server_pki, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with Server(
        server_pki,
        tmp_path_factory.mktemp("proxied") / "data",
        "--behind-proxy",
        "--trusted-proxies",
        "127.0.0.1/32",
    ) as running:
        yield running


def test_certificate_from_a_trusted_proxy_header(proxied: Server) -> None:
    device = proxied.identity("device1")
    proxied.admin_ok("POST", "/devices", json={"lfdi": device.lfdi})
    pem = device.cert.read_text()
    url = f"http://127.0.0.1:{proxied.port}/edev?l=5"
    response = httpx.get(url, headers={"x-client-cert": quote(pem)})
    assert response.status_code == 200
    assert device.lfdi in response.text
    assert httpx.get(url).status_code == 403  # no header, no identity


def test_proxy_header_from_an_untrusted_address_is_ignored(
    server_pki,
    tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
) -> None:
    running = Server(
        server_pki, tmp_path_factory.mktemp("untrusted") / "data", "--behind-proxy"
    ).start()
    try:
        device = running.identity("device1")
        running.admin_ok("POST", "/devices", json={"lfdi": device.lfdi})
        pem = quote(device.cert.read_text())
        response = httpx.get(
            f"http://127.0.0.1:{running.port}/dcap", headers={"x-client-cert": pem}
        )
        assert response.status_code == 403
    finally:
        running.stop()
