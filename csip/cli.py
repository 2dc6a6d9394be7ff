"""``csip``: one command, one subcommand per job.

Subcommands import what they need lazily, so ``csip replay`` starts fast and does not load the
server stack.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process's main coroutine on uvloop where it is installed (the server's
    event loop; plain asyncio otherwise)."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(main)
    else:
        uvloop.run(main)


def _replay(args: argparse.Namespace) -> int:
    from engine.replay import Scenario, ScenarioError, compare, dumps, run

    driver = None
    if args.runtime == "kafka":
        if not args.broker:
            print("csip replay: --runtime kafka needs --broker HOST:PORT", file=sys.stderr)
            return 2
        from engine.runtime.kafka.replay import kafka_driver

        try:
            driver = kafka_driver(
                args.broker,
                workers=args.workers,
                shards=args.shards,
                processes=args.processes or args.kill_worker_at is not None,
                standby=args.standby,
                kill_at=args.kill_worker_at,
            )
        except ValueError as exc:
            print(f"csip replay: {exc}", file=sys.stderr)
            return 2
    status = 0
    for path in args.files:
        try:
            scenario = Scenario.load(path)
            lines = run(scenario) if driver is None else run(scenario, driver)
        except ScenarioError as exc:
            print(f"csip replay: {exc}", file=sys.stderr)
            return 2
        if not args.check:
            for line in lines:
                print(dumps(line))
            continue
        problems = compare(scenario, lines)
        if problems:
            status = 1
            print(f"FAIL {path}: {scenario.name}")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"ok   {path}")
    return status


def _serve(args: argparse.Namespace) -> int:

    from gateway.server import ServeOptions, serve

    options = ServeOptions(
        **_listener_options(args),
        demo=args.demo,
        time_quality=args.time_quality,
        admin_token=args.admin_token,
        notify_test_mode=args.notify_test_mode,
        processes=args.processes,
        pen=args.pen,
    )
    if args.processes < 1:
        print("csip serve: --processes must be at least 1", file=sys.stderr)
        return 2
    _run(serve(options))
    return 0


def _serve_replica(args: argparse.Namespace) -> int:
    from gateway.server import ServeOptions, serve_replica

    options = ServeOptions(**_listener_options(args), time_quality=args.time_quality)
    _run(serve_replica(options, index=args.index, primary_socket=args.primary_socket))
    return 0


def _pen(text: str) -> int:
    if not text.isdigit() or int(text) > 99_999_999:
        raise argparse.ArgumentTypeError(f"a PEN is a number of at most 8 digits: {text!r}")
    return int(text)


def _add_pen(parser: argparse.ArgumentParser) -> None:
    """``--pen``, for the processes that make up mRIDs (the admin API: serve, gateway)."""
    parser.add_argument(
        "--pen",
        type=_pen,
        default=None,
        help="the operator's IANA Private Enterprise Number: mRIDs the server makes up (programs, "
        "defaults, FSAs the admin API did not name) end with it in 8 decimal digits, as "
        "CSIP-AUS requires (default under csip-aus: 0)",
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return seconds


def _add_http_tuning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--view-cache",
        type=int,
        default=1_000_000,
        metavar="ENTRIES",
        help="answer repeated polls from materialized views, at most ENTRIES (client, URL) "
        "pairs, about 0.35 KB each (default 1000000; 0 turns it off)",
    )
    parser.add_argument(
        "--no-view-cache",
        action="store_true",
        help="benchmark baseline: render every GET from scratch, no ETags, no 304s",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="no per-request log line (csip.access)"
    )
    parser.add_argument(
        "--keep-alive",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="close a device connection idle this long (default 5). Above the fleet's poll "
        "interval, a device polls over the connection it has instead of a new TLS handshake "
        "(about 3 ms of server CPU), at the cost of one open connection per device",
    )


def _listener_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ServeOptions every process with a 2030.5 listener takes from its command line."""
    return {
        "data": args.data,
        "pki": args.pki,
        "host": args.host,
        "port": args.port,
        "admin_host": args.admin_host,
        "admin_port": args.admin_port,
        "profile": args.profile,
        "behind_proxy": args.behind_proxy,
        "trusted_proxies": [p for p in args.trusted_proxies.split(",") if p],
        "timezone": args.timezone,
        "log_level": args.log_level,
        "ready_file": args.ready_file,
        "view_cache": 0 if args.no_view_cache else args.view_cache,
        "no_cache": args.no_view_cache,
        "access_log": not args.no_access_log,
        "keep_alive": args.keep_alive,
    }


def _gateway(args: argparse.Namespace) -> int:

    from gateway.server import ServeOptions, serve_gateway

    options = ServeOptions(
        **_listener_options(args),
        admin_token=args.admin_token,
        idempotent=not args.no_idempotence,
        notify_test_mode=args.notify_test_mode,
        pen=args.pen,
    )
    _run(serve_gateway(options, broker=args.broker, prefix=args.prefix, shards=args.shards))
    return 0


def _notifier(args: argparse.Namespace) -> int:

    from gateway.server import ServeOptions, serve_notifier

    options = ServeOptions(
        data=args.data,
        pki=args.pki,
        admin_host=args.host,
        admin_port=args.metrics_port,
        profile=args.profile,
        admin_token=args.admin_token,
        log_level=args.log_level,
        ready_file=args.ready_file,
        idempotent=not args.no_idempotence,
        notify_test_mode=args.notify_test_mode,
    )
    _run(
        serve_notifier(
            options,
            broker=args.broker,
            prefix=args.prefix,
            shards=args.shards,
            public_url=args.public_url,
        )
    )
    return 0


def _worker(args: argparse.Namespace) -> int:

    from engine.runtime.kafka.service import serve_worker
    from engine.runtime.kafka.worker import WorkerSettings
    from gateway import logs

    logs.configure(args.log_level)
    settings = WorkerSettings(
        broker=args.broker,
        prefix=args.prefix,
        shards=args.shards,
        profile=args.profile,
        clock=args.clock,
        group=args.group,
        session_timeout_ms=args.session_timeout_ms,
        idempotent=not args.no_idempotence,
        data=args.data,
        standbys=args.standby,
        warmup=not args.no_warmup,
    )
    _run(serve_worker(settings, host=args.host, metrics_port=args.metrics_port))
    return 0


def _fleet(args: argparse.Namespace) -> int:
    import json

    from fleet.admin import AdminError
    from fleet.run import FleetOptions, exit_status, run_fleet

    def json_object(text: str | None, option: str) -> dict[str, Any] | None:
        if text is None:
            return None
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"{option} takes a JSON object, not {text!r}")
        return value

    try:
        options = FleetOptions(
            devices=args.devices,
            server=args.server,
            proxy_header=args.proxy_header,
            header_name=args.proxy_header_name,
            pki=args.pki,
            identities=args.identities,
            admin=args.admin,
            admin_token=args.admin_token,
            data=args.data,
            setup=not args.no_setup,
            programs=args.programs,
            default_control=json_object(args.default_control, "--default-control"),
            time_compression=args.time_compression,
            jitter=args.jitter,
            duration=args.duration,
            ramp=args.ramp,
            connections=args.connections,
            timeout=args.timeout,
            issue_control_at=args.issue_control_at,
            issue_control_after_ready=args.issue_control_after_ready,
            stop_when_received=args.stop_when_received,
            control_program=args.control_program,
            control_duration=args.control_duration,
            control_start=args.control_start,
            control_base=json_object(args.control_base, "--control-base") or {},
            control_randomize_start=args.control_randomize_start,
            verify_sample=args.verify_sample,
            json_path=args.json,
            profile=args.profile,
            seed=args.seed,
            progress_every=args.progress_every,
            csip_tls=args.csip_tls,
        )
        summary: dict[str, Any] = {}

        async def fleet() -> None:
            summary.update(await run_fleet(options))

        _run(fleet())
    except (AdminError, FileNotFoundError, ValueError) as exc:
        print(f"csip fleet: {exc}", file=sys.stderr)
        return 2
    return exit_status(summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csip",
        description="csipstream: CSIP (IEEE 2030.5) control resolution for utilities.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = commands.add_parser(
        "replay",
        help="replay scenario files on a simulated clock",
        description=(
            "Replay scenario files (tests/scenarios/FORMAT.md) and print their outputs as JSON "
            "Lines in canonical order. With --check, compare them with each file's 'expect' "
            "instead: exit 1 and print a diff on any difference."
        ),
    )
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--check", action="store_true", help="compare with 'expect'")
    replay.add_argument(
        "--runtime",
        choices=("embedded", "kafka"),
        default="embedded",
        help="resolve in this process (embedded) or through Kafka workers (kafka)",
    )
    replay.add_argument("--broker", help="Kafka bootstrap server (--runtime kafka)")
    replay.add_argument("--workers", type=int, default=1, help="workers to run (--runtime kafka)")
    replay.add_argument("--shards", type=int, default=4, help="device shards (--runtime kafka)")
    replay.add_argument(
        "--processes",
        action="store_true",
        help="run the workers as `csip worker` processes (--runtime kafka)",
    )
    replay.add_argument(
        "--standby",
        type=int,
        default=0,
        metavar="N",
        help="workers keeping each shard warm (--runtime kafka)",
    )
    replay.add_argument(
        "--kill-worker-at",
        type=int,
        default=None,
        metavar="K",
        help="SIGKILL the first worker process once the workers have applied K input batches, "
        "then send the rest; the output must not change (implies --processes; --workers >= 2)",
    )
    replay.set_defaults(handler=_replay)

    serve = commands.add_parser(
        "serve",
        help="run the utility server: embedded runtime, 2030.5 listener, admin API",
        description=(
            "Run csipstream in one process: the embedded runtime (durable state under --data), "
            "the IEEE 2030.5 listener (HTTPS, client certificates from --pki's CA) and the "
            "admin API (JSON, OpenAPI at /admin/docs)."
        ),
    )
    serve.add_argument("--data", type=Path, default=Path("var/data"), help="data directory")
    serve.add_argument("--pki", type=Path, default=Path("var/pki"), help="PKI directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--admin-host", default="127.0.0.1")
    serve.add_argument("--admin-port", type=int, default=8080)
    serve.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    _add_pen(serve)
    serve.add_argument("--demo", action="store_true", help="load demo data into an empty server")
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="plain HTTP; client certificates come from a trusted TLS-terminating proxy",
    )
    serve.add_argument(
        "--trusted-proxies", default="", help="comma-separated networks allowed to send the header"
    )
    serve.add_argument("--timezone", default="UTC", help="IANA time zone for /tm")
    serve.add_argument(
        "--time-quality", type=int, default=4, help="/tm quality (2030.5: 3-7; default 4, NTP)"
    )
    serve.add_argument("--admin-token", default=None, help="default: CSIP_ADMIN_TOKEN or a file")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--notify-test-mode",
        action="store_true",
        help="allow http notificationURIs on loopback (for tests and conformance runs only)",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="serve the device port from N processes: this one and N-1 read replicas "
        "(one per core; default 1)",
    )
    _add_http_tuning(serve)
    serve.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(handler=_serve)

    # Started by ``csip serve --processes N`` for each replica; not for use by hand.
    replica = commands.add_parser("serve-replica")
    replica.add_argument("--index", type=int, required=True)
    replica.add_argument("--primary-socket", type=Path, required=True)
    replica.add_argument("--data", type=Path, required=True)
    replica.add_argument("--pki", type=Path, required=True)
    replica.add_argument("--host", default="127.0.0.1")
    replica.add_argument("--port", type=int, required=True)
    replica.add_argument("--admin-host", default="127.0.0.1")
    replica.add_argument("--admin-port", type=int, default=0)
    replica.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    replica.add_argument("--behind-proxy", action="store_true")
    replica.add_argument("--trusted-proxies", default="")
    replica.add_argument("--timezone", default="UTC")
    replica.add_argument("--time-quality", type=int, default=4)
    replica.add_argument("--log-level", default="info")
    replica.add_argument("--ready-file", type=Path, default=None)
    _add_http_tuning(replica)
    replica.set_defaults(handler=_serve_replica)

    gateway = commands.add_parser(
        "gateway",
        help="run a stateless Kafka-runtime gateway (2030.5 and admin listeners)",
        description=(
            "Serve IEEE 2030.5 and the admin API from a local replica of the Kafka topics; "
            "writes go to csip.commands and the telemetry topics with acks=all, and are "
            "answered once the broker has them (503 with Retry-After when it cannot)."
        ),
    )
    gateway.add_argument("--broker", required=True, help="Kafka bootstrap servers")
    gateway.add_argument("--prefix", default="", help="topic name prefix")
    gateway.add_argument("--shards", type=int, default=12, help="device shards")
    gateway.add_argument("--data", type=Path, default=Path("var/gateway"), help="replica dir")
    gateway.add_argument("--pki", type=Path, default=Path("var/pki"), help="PKI directory")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8443)
    gateway.add_argument("--admin-host", default="127.0.0.1")
    gateway.add_argument("--admin-port", type=int, default=8080)
    gateway.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    _add_pen(gateway)
    gateway.add_argument("--behind-proxy", action="store_true")
    gateway.add_argument("--trusted-proxies", default="")
    gateway.add_argument("--timezone", default="UTC")
    gateway.add_argument("--admin-token", default=None)
    gateway.add_argument("--no-idempotence", action="store_true", help="e.g. for Tansu")
    gateway.add_argument("--notify-test-mode", action="store_true", help=argparse.SUPPRESS)
    gateway.add_argument("--log-level", default="info")
    _add_http_tuning(gateway)
    gateway.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    gateway.set_defaults(handler=_gateway)

    notifier = commands.add_parser(
        "notifier",
        help="run the Kafka-runtime notifier: subscriptions to Notification POSTs",
        description=(
            "Follow csip.commands into a local replica, render every subscribed resource after "
            "each change (commands and time), and deliver Notifications from a durable queue "
            "with retries over 30 minutes and dead letters. Health, readiness, metrics and the "
            "admin API (dead letters) on --metrics-port."
        ),
    )
    notifier.add_argument("--broker", required=True, help="Kafka bootstrap servers")
    notifier.add_argument("--prefix", default="", help="topic name prefix")
    notifier.add_argument("--shards", type=int, default=12, help="device shards")
    notifier.add_argument("--data", type=Path, default=Path("var/notifier"))
    notifier.add_argument("--pki", type=Path, default=Path("var/pki"))
    notifier.add_argument("--host", default="127.0.0.1")
    notifier.add_argument("--metrics-port", type=int, default=9100)
    notifier.add_argument(
        "--public-url",
        default="https://127.0.0.1:8443",
        help="the gateways' base URL, for the absolute URIs in Notifications",
    )
    notifier.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    notifier.add_argument("--admin-token", default=None)
    notifier.add_argument("--no-idempotence", action="store_true", help="e.g. for Tansu")
    notifier.add_argument("--notify-test-mode", action="store_true", help=argparse.SUPPRESS)
    notifier.add_argument("--log-level", default="info")
    notifier.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    notifier.set_defaults(handler=_notifier)

    worker = commands.add_parser(
        "worker",
        help="run a Kafka-runtime worker: resolve the devices of the shards it owns",
        description=(
            "Read csip.commands, resolve the devices of the shards the csip-workers group "
            "assigns to this worker, and publish effective control, response lifecycles and "
            "event status. Health, readiness and metrics on --metrics-port."
        ),
    )
    worker.add_argument("--broker", required=True, help="Kafka bootstrap servers")
    worker.add_argument("--prefix", default="", help="topic name prefix")
    worker.add_argument("--shards", type=int, default=12, help="device shards (csip.shards)")
    worker.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    worker.add_argument("--clock", choices=("wall", "event"), default="wall")
    worker.add_argument(
        "--data", type=Path, default=None, help="local checkpoints (default: rebuild from the log)"
    )
    worker.add_argument("--group", default="csip-workers", help="consumer group of workers")
    worker.add_argument("--session-timeout-ms", type=int, default=10_000)
    worker.add_argument(
        "--standby",
        type=int,
        default=0,
        metavar="N",
        help="other workers keeping each shard warm, to take it over without a rebuild "
        "(default 0; each standby costs about the CPU and memory of owning the shard; the "
        "group uses the largest N any worker asks for)",
    )
    worker.add_argument(
        "--no-warmup",
        action="store_true",
        help="take shards from live owners at once and rebuild them, instead of building them "
        "in the background first while their owners go on (the group warms up only if every "
        "worker does)",
    )
    worker.add_argument(
        "--no-idempotence",
        action="store_true",
        help="plain producer (for brokers without idempotent producers, e.g. Tansu)",
    )
    worker.add_argument("--host", default="127.0.0.1", help="metrics/health listener host")
    worker.add_argument("--metrics-port", type=int, default=9464)
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(handler=_worker)

    fleet = commands.add_parser(
        "fleet",
        help="simulate a fleet of CSIP devices against a server",
        description=(
            "Simulate N CSIP devices, each with its own client certificate: discovery from "
            "/dcap, polling at the server's pollRates (divided by --time-compression) with "
            "conditional GETs, DER status and meter posts, and DERControlResponses worked out "
            "by the resolution kernel. Registers the devices through the admin API, can issue "
            "a control during the run, then compares a sample of devices with the server's own "
            "view and prints a summary. Exit 1 on any disagreement. See docs/fleet.md."
        ),
    )
    fleet.add_argument("--devices", type=int, default=10, metavar="N", help="default 10")
    fleet.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="2030.5 listener (default https://127.0.0.1:8443, http:// with --proxy-header)",
    )
    fleet.add_argument(
        "--proxy-header",
        action="store_true",
        help="plain HTTP with each device's certificate in X-Client-Cert, to a server run with "
        "--behind-proxy --trusted-proxies 127.0.0.1 (for very large fleets)",
    )
    fleet.add_argument("--proxy-header-name", default="X-Client-Cert", help=argparse.SUPPRESS)
    fleet.add_argument("--pki", type=Path, default=Path("var/pki"), help="PKI directory (its CA)")
    fleet.add_argument(
        "--identities", type=Path, default=None, metavar="DIR", help="default: PKI/fleet"
    )
    fleet.add_argument("--admin", default="http://127.0.0.1:8080", metavar="URL")
    fleet.add_argument(
        "--admin-token", default=None, help="default: CSIP_ADMIN_TOKEN, else DATA/admin.token"
    )
    fleet.add_argument(
        "--data", type=Path, default=Path("var/data"), help="the server's data directory"
    )
    fleet.add_argument(
        "--no-setup",
        action="store_true",
        help="do not create programs or register devices (they are already)",
    )
    fleet.add_argument(
        "--programs",
        default="system",
        metavar="LAYOUT",
        help="program groups, e.g. system,substation-4,feeder-16 (NAME[-COUNT][:PRIMACY])",
    )
    fleet.add_argument(
        "--default-control",
        default=None,
        metavar="JSON",
        help="DefaultDERControl for the first group, e.g. '{\"opModMaxLimW\": 10000}'",
    )
    fleet.add_argument(
        "--time-compression",
        type=float,
        default=1.0,
        metavar="F",
        help="divide every pollRate and postRate by F (60: a 300 s poll every 5 s)",
    )
    fleet.add_argument("--jitter", type=float, default=0.1, help="relative, default 0.1")
    fleet.add_argument("--duration", type=float, default=60.0, metavar="SECONDS")
    fleet.add_argument(
        "--ramp",
        type=float,
        default=None,
        metavar="SECONDS",
        help="spread discovery over this long (default N/100 s, at most 300)",
    )
    fleet.add_argument(
        "--connections", type=int, default=128, help="requests in flight at most (default 128)"
    )
    fleet.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    fleet.add_argument(
        "--issue-control-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="issue a control (responseRequired 03) this long after the start",
    )
    fleet.add_argument(
        "--issue-control-after-ready",
        type=float,
        default=None,
        metavar="SECONDS",
        help="issue it this long after every device has finished discovery (at the latest at "
        "--issue-control-at, if given)",
    )
    fleet.add_argument(
        "--stop-when-received",
        type=float,
        default=None,
        metavar="SECONDS",
        help="end the run this long after every device of the control's program has posted "
        '"received" (--duration still bounds the run)',
    )
    fleet.add_argument("--control-program", default=None, help="default: the first program")
    fleet.add_argument("--control-duration", type=int, default=300, metavar="SECONDS")
    fleet.add_argument(
        "--control-start", type=int, default=0, metavar="SECONDS", help="delay after issuing"
    )
    fleet.add_argument(
        "--control-base", default='{"opModMaxLimW": 5000}', metavar="JSON", help="its modes"
    )
    fleet.add_argument("--control-randomize-start", type=int, default=0, metavar="SECONDS")
    fleet.add_argument(
        "--verify-sample",
        type=int,
        default=200,
        metavar="K",
        help="devices compared with the server's view at the end (0: none)",
    )
    fleet.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the summary")
    fleet.add_argument("--profile", choices=("csip", "csip-aus"), default="csip")
    fleet.add_argument("--seed", type=int, default=None, help="for the schedule's randomness")
    fleet.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="progress line period when stderr is not a terminal",
    )
    fleet.add_argument(
        "--csip-tls",
        action="store_true",
        help="TLS 1.2 with ECDHE-ECDSA-AES128-CCM8 only, as CSIP devices",
    )
    fleet.set_defaults(handler=_fleet)

    from gateway.pki import add_subparser as add_pki
    from topics.cli import add_subparser as add_topics

    add_pki(commands)
    add_topics(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # e.g. `csip replay f.json | head`
        return 0
    except KeyboardInterrupt:
        return 130
