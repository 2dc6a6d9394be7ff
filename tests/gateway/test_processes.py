"""``csip serve --processes 2``: a primary and a read replica on one device port.

New connections are spread over both processes by the kernel (SO_REUSEPORT), so every test
opens many connections and checks, from each process's own metrics, that both took part.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.identity import IdentityError, identity_from_scope
from gateway.pki import Pki
from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}
NS = 'xmlns="urn:ieee:std:2030.5:ns"'
STATUS = (
    f"<DERStatus {NS}><inverterStatus><dateTime>1767225600</dateTime><value>{{}}</value>"
    "</inverterStatus><readingTime>1767225600</readingTime></DERStatus>"
)


@pytest.fixture(scope="module")
def two(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(
        server_pki, tmp_path_factory.mktemp("processes") / "data", "--processes", "2"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def world(two: Server) -> dict[str, Any]:
    two.admin_ok("PUT", "/programs/mp", json={"primacy": 3})
    lfdi = two.identity("device1").lfdi
    edev = two.admin_ok("POST", "/devices", json={"lfdi": lfdi})["edevId"]
    two.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["mp"]}])
    return {"edev": edev}


def replica_ports(server: Server) -> tuple[int, int]:
    """(device port, ops port) of replica 1, from its ready file."""
    ready = server.data / "replicas" / "replica-1.ready"
    device, ops = map(int, ready.read_text().split())
    return device, ops


def served(base: str, method: str) -> float:
    """Device requests of ``method`` a process has answered, from its /metrics."""
    metrics = httpx.get(f"{base}/metrics").text
    pattern = rf'^csip_http_requests_total\{{listener="device",method="{method}",.*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, metrics, re.MULTILINE))


def fresh(server: Server) -> httpx.Client:
    """A client on a new connection (the kernel picks the process)."""
    return server.client("device1")


def test_both_processes_answer_on_the_same_port(two: Server, world: dict[str, Any]) -> None:
    device_port, ops = replica_ports(two)
    assert device_port == two.port
    assert httpx.get(f"http://127.0.0.1:{ops}/readyz").text.strip() == "ready"
    primary = f"http://127.0.0.1:{two.admin_port}"
    replica = f"http://127.0.0.1:{ops}"
    before = served(primary, "GET"), served(replica, "GET")
    bodies = set()
    for _ in range(40):
        with fresh(two) as client:
            answer = client.get("/derp/mp/derc")
            assert answer.status_code == 200
            bodies.add((answer.content, answer.headers["etag"]))
    after = served(primary, "GET"), served(replica, "GET")
    assert after[0] > before[0] and after[1] > before[1], (
        "both processes took connections",
        before,
        after,
    )
    assert len(bodies) == 1, "every process renders the same body with the same ETag"


def test_writes_through_either_process_are_read_back_on_the_same_connection(
    two: Server, world: dict[str, Any]
) -> None:
    replica = f"http://127.0.0.1:{replica_ports(two)[1]}"
    forwarded = served(replica, "PUT")
    url = f"/edev/{world['edev']}/der/1/ders"
    for value in range(1, 31):
        with fresh(two) as client:
            assert client.put(url, content=STATUS.format(value), headers=SEP).status_code == 204
            assert f"<value>{value}</value>" in client.get(url).text
    assert served(replica, "PUT") > forwarded, "some writes went through the replica"


def test_an_operator_change_reaches_every_process_within_the_catch_up_interval(
    two: Server, world: dict[str, Any]
) -> None:
    start = int(time.time()) + 3600
    two.admin_ok(
        "POST",
        "/programs/mp/controls",
        json={"start": start, "duration": 60, "base": {"opModFixedW": 1}},
    )
    time.sleep(0.5)
    for _ in range(20):
        with fresh(two) as client:
            assert 'all="1"' in client.get("/derp/mp/derc").text


def test_a_replica_that_dies_is_started_again(two: Server, world: dict[str, Any]) -> None:
    ready = two.data / "replicas" / "replica-1.ready"
    pid = _replica_pid(two)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip() and _replica_pid(two) not in (0, pid):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the replica was not started again")
    for _ in range(10):
        with fresh(two) as client:
            assert client.get("/derp/mp/derc").status_code == 200


def test_a_replica_does_not_outlive_a_killed_primary(
    server_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No orphan keeps answering on the shared port after the primary is SIGKILLed."""
    server = Server(
        server_pki, tmp_path_factory.mktemp("orphan") / "data", "--processes", "2"
    ).start()
    try:
        replica = _replica_pid(server)
        assert replica
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(replica):
            time.sleep(0.1)
        assert not _alive(replica), "the replica outlived its primary"
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return re.search(r"^State:\s+Z", status, re.MULTILINE) is None


def _replica_pid(server: Server) -> int:
    assert server.process is not None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE)
        if b"serve-replica" in cmdline and parent and int(parent.group(1)) == server.process.pid:
            return int(entry.name)
    return 0


def test_the_internal_listener_believes_only_replicas() -> None:
    scope = {"type": "http", "headers": [(b"x-csip-client-cert", b"x")], "client": None}
    with pytest.raises(IdentityError):
        identity_from_scope(scope, replica_token="secret")
    scope["headers"].append((b"x-csip-replica", b"guess"))
    with pytest.raises(IdentityError):
        identity_from_scope(scope, replica_token="secret")


def test_a_replica_refuses_like_the_primary_with_a_2030_5_error(
    two: Server, world: dict[str, Any]
) -> None:
    """An oversized write is refused by whichever process took the connection, before any
    forwarding: the same 413 and the same 2030.5 Error body from both."""
    replica = f"http://127.0.0.1:{replica_ports(two)[1]}"
    before = served(replica, "POST")
    body = "<MirrorUsagePoint>" + "x" * 70_000 + "</MirrorUsagePoint>"
    headers = {"Content-Type": "application/sep+xml", "Accept": "application/sep+xml"}
    answers = set()
    for _ in range(30):
        with fresh(two) as client:
            refused = client.post("/mup", content=body, headers=headers)
            answers.add((refused.status_code, refused.content, refused.headers["content-type"]))
    assert served(replica, "POST") > before, "the replica took some of the connections"
    assert answers == {
        (
            413,
            b'<Error xmlns="urn:ieee:std:2030.5:ns"><reasonCode>0</reasonCode></Error>',
            "application/sep+xml",
        )
    }


def test_run_directories_of_killed_primaries_are_removed(tmp_path: Path) -> None:
    from gateway.server import RUN_DIR_PID, RUN_DIR_PREFIX, remove_stale_run_dirs

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process now
    stale = tmp_path / f"{RUN_DIR_PREFIX}stale"
    stale.mkdir()
    (stale / RUN_DIR_PID).write_text(f"{gone.pid}\n")
    (stale / "primary.sock").write_text("")
    running = tmp_path / f"{RUN_DIR_PREFIX}running"
    running.mkdir()
    (running / RUN_DIR_PID).write_text(f"{os.getpid()}\n")
    unknown = tmp_path / f"{RUN_DIR_PREFIX}unknown"  # no pid file: not ours to judge
    unknown.mkdir()
    assert remove_stale_run_dirs(tmp_path) == [stale]
    assert not stale.exists() and running.exists() and unknown.exists()
