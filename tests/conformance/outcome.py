"""What happened in one procedure, in a sentence; and RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _clip(text: str, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_failure(directory: Path, code: int) -> str:
    """The first reason the procedure did not pass: an admin instruction csipstream could not
    carry out, a failed step (its check or exception), a step still repeating when the run
    ended, or XSD errors in what the server sent."""
    admin = directory / "admin-failures.jsonl"
    if admin.exists() and admin.read_text().strip():
        first = json.loads(admin.read_text().splitlines()[0])
        return _clip(f"step {first['step']}: admin instruction {first['reason']}")
    path = directory / "outcome.json"
    if not path.exists():
        return f"cactus exited {code} without an outcome; see cactus-output.txt"
    outcome = json.loads(path.read_text())
    for step in outcome["steps"]:
        if step["state"] == "failed":
            return _clip(f"step {step['id']}: {step['reason']}")
        if step["state"] == "unfinished":
            return _clip(
                f"step {step['id']} still failing after {step['attempts']} attempt(s) when the "
                f"run ended (timeout): {step['reason']}"
            )
    if outcome["xsd_errors"]:
        first = outcome["xsd_errors"][0]
        return _clip(
            f"XSD errors in {len(outcome['xsd_errors'])} response(s); first {first['method']} "
            f"{first['url']}: {'; '.join(first['errors'])}"
        )
    if not outcome["execution_complete"]:
        return "the run did not complete (timeout or exception)"
    return f"cactus exited {code}; see cactus-output.txt"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_results(path: Path, results: list[Any], **meta: Any) -> None:
    passed = sum(r.passed for r in results)
    minutes = meta["seconds"] / 60
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# CACTUS server test procedures against csipstream",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['started']} (UTC); {minutes:.0f} minutes; server profile "
        f"`{meta['profile']}`",
        f"- {versions}",
        f"- server under test: {meta['server']}",
        f"- result: {passed} of {len(results)} passed",
        "",
        "`core` procedures use only IEEE 2030.5; `CSIP-AUS` ones use elements of the "
        "https://csipaus.org/ns namespace (see tests/conformance/README.md).",
        "",
        "| procedure | title | needs | result | time | first failure reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(
            f"| {r.id} | {_cell(r.title)} | {r.needs} | {verdict} | {r.seconds:.0f} s "
            f"| {_cell(r.reason)} |"
        )
    path.write_text("\n".join(lines) + "\n")
