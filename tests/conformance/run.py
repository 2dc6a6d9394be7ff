"""Run the CACTUS server test procedures (bsgip's cactus-client) against csipstream, headless.

    python tests/conformance/run.py [--profile csip|csip-aus] [--procedures IDS|core|aus|all]
                                    [--quick] [--jobs N] [--results PATH]

Sets up Python 3.12 venvs for cactus-client with our admin plugin (tests/conformance/plugin)
and for the notification sink, makes a development PKI, starts the sink, and for every
procedure starts a fresh ``csip serve --notify-test-mode`` on 127.0.0.1, writes cactus's
configuration and runs ``cactus run``. Writes a per-procedure table to RESULTS.md (the whole
selection: tests/conformance/RESULTS.md; a subset: the run's own directory, unless --results)
and exits 1 if any procedure failed. Artifacts (cactus reports and logs, server logs) stay in
tests/conformance/.runs/<time>/.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import outcome

# Fast core-only procedures (no waits, one client or two), for CI.
QUICK = ("S-ALL-02", "S-ALL-03", "S-ALL-08", "S-ALL-09", "S-ALL-43", "S-OPT-04")
# Never part of "all": 72 hours of simulated polling. Name it to run it.
LONG = ("S-ALL-50",)
# Per procedure: this plus 1.5 times what it waits by design (catalogue.py), so that a step
# repeating forever (repeat_until_pass on state the server never reaches) ends the run.
BASE_TIMEOUT = 300


@dataclass
class Result:
    id: str
    title: str
    needs: str
    passed: bool
    reason: str
    seconds: float


def catalogue(cactus_python: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(cactus_python), str(harness.HERE / "catalogue.py")],
        check=True,
        capture_output=True,
        text=True,
    )
    procedures: list[dict[str, object]] = json.loads(done.stdout)
    return procedures


def select(
    procedures: list[dict[str, object]], wanted: str, quick: bool
) -> list[dict[str, object]]:
    by_id = {str(p["id"]): p for p in procedures}
    if quick:
        return [by_id[i] for i in QUICK]
    if wanted in ("all", "core", "aus"):
        chosen = [p for p in procedures if p["id"] not in LONG]
        if wanted == "core":
            chosen = [p for p in chosen if not p["aus"]]
        elif wanted == "aus":
            chosen = [p for p in chosen if p["aus"]]
        return chosen
    ids = [i.strip().upper() for i in wanted.split(",") if i.strip()]
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise SystemExit(f"unknown procedure(s): {', '.join(unknown)}")
    return [by_id[i] for i in ids]


def assign(procedure: dict[str, object]) -> list[str]:
    """cactus client ids for the procedure's required clients (in their order)."""
    devices = iter(("device1", "device2"))
    names = []
    for kind in procedure["clients"]:  # type: ignore[attr-defined]
        names.append("aggregator1" if kind == "aggregator" else next(devices))
    return names


def run_one(
    procedure: dict[str, object],
    run_dir: Path,
    pki: Path,
    clients: list[dict[str, object]],
    sink_port: int,
    cactus_python: Path,
    profile: str,
    strict: bool,
) -> Result:
    pid = str(procedure["id"])
    timeout = BASE_TIMEOUT + int(1.5 * int(procedure["waits"]))  # type: ignore[call-overload]
    directory = run_dir / pid
    (directory / "cactus").mkdir(parents=True)
    token = secrets.token_hex(16)
    started = time.monotonic()
    server, port, admin_port = harness.start_server(pki, directory / "data", token, profile)
    try:
        config = {
            "output_dir": str(directory / "cactus"),
            "server": {
                "device_capability_uri": f"https://127.0.0.1:{port}/dcap",
                "verify_ssl": True,
                "verify_host_name": True,
                "serca_pem_file": str(pki / "ca.pem"),
                "notification_uri": f"http://127.0.0.1:{sink_port}/",
                "pen": harness.SERVER_PEN,
            },
            "clients": clients,
        }
        config_file = directory / "cactus.yaml"
        config_file.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
        failures = directory / "admin-failures.jsonl"
        env = {
            **os.environ,
            "CSIPSTREAM_ADMIN_URL": f"http://127.0.0.1:{admin_port}/admin",
            "CSIPSTREAM_ADMIN_TOKEN": token,
            "CSIPSTREAM_CACTUS_FAILURES": str(failures),
        }
        command = [str(cactus_python), str(harness.HERE / "cactus_run.py"),
                   str(directory / "outcome.json"), "run", "-c", str(config_file), "--headless",
                   "--timeout", str(timeout), *(["--strict"] if strict else []),
                   pid, *assign(procedure)]  # fmt: skip
        cactus = harness.spawn(command, directory / "cactus-output.txt", env)
        try:
            code = cactus.popen.wait(timeout + 120)  # cactus's own --timeout comes first
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            cactus.stop()
    finally:
        server.stop()
    reason = "" if code == 0 else outcome.first_failure(directory, code)
    needs = "CSIP-AUS" if procedure["aus"] else "core"
    seconds = time.monotonic() - started
    print(f"{pid}: {'PASS' if code == 0 else 'FAIL'} ({seconds:.0f} s) {reason}", flush=True)
    return Result(pid, str(procedure["title"]), needs, code == 0, reason, seconds)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("csip", "csip-aus"), default="csip-aus")
    parser.add_argument(
        "--procedures", default="all", help="IDs (comma-separated), core, aus or all"
    )
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--jobs", type=int, default=1, help="procedures run at once (own servers)")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument(
        "--strict", action="store_true", help="cactus --strict: warnings fail a procedure too"
    )
    args = parser.parse_args()

    cactus_python, sink_python = harness.ensure_venvs()
    procedures = catalogue(cactus_python)
    chosen = select(procedures, args.procedures, args.quick)
    whole = not args.quick and args.procedures == "all"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = harness.HERE / ".runs" / stamp
    run_dir.mkdir(parents=True)
    results_file = args.results or (
        harness.HERE / "RESULTS.md" if whole else run_dir / "RESULTS.md"
    )
    pki = run_dir / "pki"
    clients = harness.client_configs(pki, harness.make_pki(pki))

    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    sink, sink_port = harness.start_sink(sink_python, run_dir)
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        # The longest first, so that they overlap the many short ones; reported in id order.
        longest_first = sorted(chosen, key=lambda p: -int(p["waits"]))  # type: ignore[call-overload]
        done = pool.map(
            lambda p: run_one(
                p, run_dir, pki, clients, sink_port, cactus_python, args.profile, args.strict
            ),
            longest_first,
        )
        by_id = {r.id: r for r in done}
        results = [by_id[str(p["id"])] for p in chosen]
    except KeyboardInterrupt:
        print("interrupted: stopping every server and cactus run", flush=True)
        harness.stop_everything()
        pool.shutdown(wait=True, cancel_futures=True)
        harness.stop_everything()
        return 130
    finally:
        pool.shutdown(wait=True)
        sink.stop()
    command = " ".join(
        shlex.quote(a) for a in ["python", "tests/conformance/run.py", *sys.argv[1:]]
    )
    outcome.write_results(
        results_file,
        results,
        command=command,
        profile=args.profile,
        started=stamp,
        seconds=time.monotonic() - started,
        versions=harness.installed_versions(cactus_python),
        server=os.environ.get("CONFORMANCE_SERVER_LABEL", "csipstream at this checkout"),
    )
    failed = [r.id for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed; {results_file}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
