"""``csip topics``: create the catalog's topics, print the topology, generate the README.

``add_subparser(commands)`` plugs these into the ``csip`` CLI (like ``gateway.pki``); ``main``
runs them alone, for tests and for ``python -m topics.cli``. Kafka is imported only by
``create``, so ``describe`` and ``docs`` work without a broker.

Exit codes: 0 done; 1 the cluster (or README) is not as the catalog wants; 2 the broker is
unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from topics.catalog import DEFAULT_SHARDS

EXIT_OK = 0
EXIT_NOT_AS_WANTED = 1
EXIT_UNREACHABLE = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def run_create(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from topics.admin import BrokerUnreachable, connect, ensure_topics, format_report

    try:
        admin = connect(args.broker, args.timeout)
    except BrokerUnreachable as exc:
        print(f"csip topics create: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        report = ensure_topics(
            admin, shards=args.shards, replication=args.replication, prefix=args.prefix
        )
    except BrokerUnreachable as exc:
        print(f"csip topics create: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KafkaError as exc:  # e.g. not authorized to list topics: say so, no traceback
        print(f"csip topics create: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_NOT_AS_WANTED
    finally:
        admin.close()
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_NOT_AS_WANTED


def run_describe(args: argparse.Namespace) -> int:
    from topics.topology import describe, render_text

    if args.format == "json":
        print(json.dumps(describe(args.shards), indent=2))
    else:
        print(render_text(args.shards))
    return EXIT_OK


def run_docs(args: argparse.Namespace) -> int:
    from topics.docs import is_current, write

    path: Path = args.output
    if args.check:
        if is_current(path):
            print(f"{path} is up to date")
            return EXIT_OK
        print(f"{path} is out of date: run `csip topics docs`", file=sys.stderr)
        return EXIT_NOT_AS_WANTED
    changed = write(path)
    print(f"{'wrote' if changed else 'unchanged'} {path}")
    return EXIT_OK


def add_subparser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``csip topics create|describe|docs`` to the csip CLI's subcommands."""
    from topics.docs import README

    topics = commands.add_parser(
        "topics",
        help="Kafka topics: create them, print the topology, generate their documentation",
        description="The topic catalog (topics/catalog.py) as a cluster, a topology and a README.",
    )
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="create every catalog topic (idempotent)",
        description=(
            "Create every topic of the catalog that is missing, with its partitions and configs "
            "(cleanup.policy, retention.ms). Existing topics are reported, not changed, except "
            "that shard-partitioned topics with fewer partitions than --shards get partitions "
            "added. Partitions are never removed. Exit 1 if the cluster is not as the catalog "
            "wants afterwards, 2 if the broker is unreachable."
        ),
    )
    create.add_argument("--broker", required=True, metavar="HOST:PORT", help="comma-separated")
    create.add_argument(
        "--shards",
        type=_positive,
        default=DEFAULT_SHARDS,
        metavar="N",
        help=f"device shards: partitions of the shard-partitioned topics (default "
        f"{DEFAULT_SHARDS}); can grow, never shrink",
    )
    create.add_argument(
        "--replication", type=_positive, default=1, metavar="R", help="replication factor"
    )
    create.add_argument("--prefix", default="", metavar="P", help="prefix of every topic name")
    create.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the broker (default 30)",
    )
    create.set_defaults(handler=run_create)

    describe = actions.add_parser(
        "describe",
        help="print the topology (processes, sources, processors, stores, sinks)",
        description="Print the Kafka runtime's topology, like Kafka Streams' Topology.describe().",
    )
    describe.add_argument("--shards", type=_positive, default=DEFAULT_SHARDS, metavar="N")
    describe.add_argument("--format", choices=("text", "json"), default="text")
    describe.set_defaults(handler=run_describe)

    docs = actions.add_parser(
        "docs",
        help="write topics/README.md from the catalog",
        description="Generate the topics' documentation for data teams from the catalog.",
    )
    docs.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    docs.add_argument("--output", type=Path, default=README, metavar="FILE", help=argparse.SUPPRESS)
    docs.set_defaults(handler=run_docs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csip")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_subparser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``csip topics ...`` without the rest of the CLI: ``main(["topics", "describe"])``."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
