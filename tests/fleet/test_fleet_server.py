"""The fleet against a real ``csip serve``: real HTTPS, real client certificates (or the proxy
header), a control issued mid-run, and the server's own view of every device compared; and
``csip fleet`` itself exiting 1 when the server's view really differs from what a device did.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet import reports
from fleet.identities import fleet_directory
from fleet.run import FleetOptions, exit_status, run_fleet
from gateway.pki import Pki, ensure_pki
from tests.gateway.server_fixtures import TOKEN, Server

# Server rates that keep a test fleet light: the DER function set (and the posts) often, the
# rest seldom. At time compression 300 the DERProgramList's 600 s is a 2 s poll.
POLL_RATES = {"dcap": 9000, "time": 9000, "edev": 3000, "fsa": 3000, "derp": 600}
POST_RATES = {"edev": 600, "mup": 600}
PROGRESS = re.compile(r"^fleet: \d+s/\d+s \|")


@pytest.fixture(scope="module")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return ensure_pki(tmp_path_factory.mktemp("fleet-pki"), devices=0, aggregators=0)


def run(server: Server, url: str, **options: Any) -> dict[str, Any]:
    settings = FleetOptions(
        server=url,
        pki=server.pki.directory,
        admin=f"http://127.0.0.1:{server.admin_port}",
        admin_token=TOKEN,
        data=None,
        seed=7,
        progress_every=5,
        **options,
    )
    return asyncio.run(run_fleet(settings))


def check(summary: dict[str, Any], devices: int) -> None:
    """What every run must show: all discovered, no errors, the control fetched and answered
    by every member, the server in agreement, and conditional GETs doing their job."""
    assert summary["devices"]["discovered"] == devices, summary["devices"]
    assert summary["requests"]["totals"]["errors"] == {}, summary["requests"]["totals"]
    assert not summary["fleet"]["crashes"], summary["fleet"]["crashes"]
    assert not summary["kernel"]["refused_inputs"]
    control = summary["control"]
    assert control is not None, summary["notes"]
    for part in ("fetched", "received"):
        assert control[part]["all"], (part, control)
        assert control[part]["all_within_s"] is not None
    verification = summary["verification"]
    assert verification["sampled_devices"] == devices
    assert verification["disagreements"] == 0, verification["examples"]
    assert verification["compared_controls"] >= control["devices"]
    assert exit_status(summary) == 0
    by_kind = summary["requests"]["by_kind"]
    assert by_kind["GET DERControlList"]["not_modified"] > 0
    assert summary["requests"]["totals"]["not_modified"] > devices
    posted = summary["responses"]["posted"]
    assert posted.get("1", 0) >= control["devices"]
    assert posted.get("2", 0) >= control["devices"]  # it starts at once


def light(server: Server) -> Server:
    server.admin_ok("PUT", "/poll-rates", json=POLL_RATES)
    server.admin_ok("PUT", "/post-rates", json=POST_RATES)
    return server


def test_mtls_fleet(fleet_pki: Pki, tmp_path: Path) -> None:
    """30 devices over mutual TLS, each with its own certificate; a system program with a
    default and three feeders; a control issued in one feeder. Then ``csip fleet`` again while
    an impostor, holding one device's certificate, posts a response that device never sent:
    the server's view differs from what the device did, and the command exits 1."""
    server = light(Server(fleet_pki, tmp_path / "data").start())
    try:
        summary = run(
            server,
            server.url,
            devices=30,
            programs="system,feeder-3",
            default_control={"opModMaxLimW": 9000, "opModConnect": True},
            time_compression=300,
            duration=7,
            ramp=1,
            issue_control_at=3,
            control_program="feeder-2",
            control_duration=900,
        )
        check(summary, 30)
        assert summary["run"]["identity"] == "mtls"
        assert summary["control"]["devices"] == 10  # feeder-2 is every third device
        assert summary["fleet"]["tls_contexts"] == 30
        assert summary["registration"]["created"] == 30
        by_kind = summary["requests"]["by_kind"]
        assert by_kind["GET DefaultDERControl"]["full"] >= 30
        for kind in ("PUT DERStatus", "POST MirrorMeterReadingList", "PUT DERCapability"):
            assert by_kind[kind]["ok"] >= 30, kind
        again = impostor_run(server, tmp_path / "again.json", summary["control"]["mRID"])
    finally:
        server.stop()
    # The second run found the devices registered already and their certificates on disk.
    assert again["registration"]["unchanged"] == 30
    verification = again["verification"]
    assert verification["disagreements"] == 1, verification
    (found,) = verification["examples"]
    assert (found["kind"], found["mRID"]) == ("unexpected", summary["control"]["mRID"])
    assert found["lfdi"] == identity_of(server, 1)[0]
    assert "status 3" in found["detail"]


def identity_of(server: Server, index: int) -> tuple[str, Path]:
    """Fleet device ``index``'s LFDI and certificate bundle, as the fleet stored them."""
    where = fleet_directory(server.pki.directory)
    lines = (where / "identities.jsonl").read_text().splitlines()
    record = json.loads(lines[1 + index])
    return record["lfdi"], where / "bundles" / f"{record['name']}.pem"


def impostor_run(server: Server, summary_path: Path, mrid: str) -> dict[str, Any]:
    """``csip fleet`` (the command, in its own process) against the same server; once it is
    running, device 1's certificate posts "completed" (3) for control ``mrid``, which that
    device never posts. Returns the summary the command wrote, after checking it exited 1."""
    command = [
        sys.executable, "-m", "csip", "fleet", "--devices", "30",
        "--server", server.url, "--pki", str(server.pki.directory),
        "--admin", f"http://127.0.0.1:{server.admin_port}", "--admin-token", TOKEN,
        "--programs", "system,feeder-3", "--time-compression", "300", "--duration", "4",
        "--ramp", "0.5", "--seed", "7", "--progress-every", "0.5", "--json", str(summary_path),
    ]  # fmt: skip
    fleet = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fleet.stderr is not None
        deadline = time.monotonic() + 30
        for line in fleet.stderr:  # wait until the devices are running
            if PROGRESS.match(line) or time.monotonic() > deadline:
                break
        lfdi, bundle = identity_of(server, 1)  # device 1 is in feeder-2
        tls = ssl.create_default_context(cafile=str(server.pki.ca_cert))
        tls.load_cert_chain(bundle)
        with httpx.Client(base_url=server.url, verify=tls, timeout=10) as impostor:
            posted = impostor.post(
                "/rsps/feeder-2/rsp",
                content=reports.control_response(lfdi, mrid, 3, int(time.time())),
                headers={"Content-Type": "application/sep+xml"},
            )
        assert posted.status_code == 201, posted.text
        output, errors = fleet.communicate(timeout=60)
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    assert fleet.returncode == 1, (fleet.returncode, output, errors)
    assert ": 1 disagreement {" in output, output
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary


def test_proxy_header_fleet(fleet_pki: Pki, tmp_path: Path) -> None:
    """100 devices in proxy-header mode (plain HTTP, certificate in X-Client-Cert); a
    system-wide control."""
    server = Server(
        fleet_pki, tmp_path / "data", "--behind-proxy", "--trusted-proxies", "127.0.0.1"
    ).start()
    try:
        summary = run(
            light(server),
            f"http://127.0.0.1:{server.port}",
            devices=100,
            proxy_header=True,
            time_compression=300,
            duration=10,
            ramp=1,
            issue_control_at=5,
            control_duration=900,
        )
    finally:
        server.stop()
    check(summary, 100)
    assert summary["run"]["identity"] == "proxy-header"
    assert summary["control"]["devices"] == 100
    assert summary["fleet"]["tls_contexts"] == 0
