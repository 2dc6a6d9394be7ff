"""``csip``: one command, one subcommand per job.

Subcommands import what they need lazily, so ``csip replay`` starts fast and does not load the
server stack.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _replay(args: argparse.Namespace) -> int:
    from engine.replay import Scenario, ScenarioError, compare, dumps, run

    status = 0
    for path in args.files:
        try:
            scenario = Scenario.load(path)
            lines = run(scenario)
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
    replay.set_defaults(handler=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # e.g. `csip replay f.json | head`
        return 0
    except KeyboardInterrupt:
        return 130
