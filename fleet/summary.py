"""The end-of-run report: one JSON-ready dict (``--json``) and its text rendering.

What it says:

- ``run``: devices, identity mode, server, time compression, planned and actual duration,
  whether Ctrl-C ended it;
- ``devices``: how many finished discovery, and why the others did not;
- ``requests``: per kind (``GET DERControlList``, ``POST DERControlResponse``...) how many, for
  GETs how many were full (200) and not modified (304), errors by status code or failure, and
  latency percentiles in milliseconds; ``totals`` over all kinds;
- ``schedule_lag_s``: how late jobs started against their due time (the fleet keeping up);
- ``responses``: DERControlResponses accepted by status, refused by status code, still waiting;
- ``control``: for the control the run issued, how long until every device had fetched it and
  until every device had posted "received" (1), with the distribution over devices;
- ``verification``: the comparison with the server's own view (``fleet/verify.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleet.device import Device
from fleet.stats import RequestStats, percentiles

STATUS_NAMES = {
    1: "received",
    2: "started",
    3: "completed",
    6: "cancelled",
    7: "superseded",
    13: "aborted (other server)",
    14: "aborted (program removed)",
    252: "rejected (not applicable)",
    253: "rejected (invalid)",
    254: "rejected (expired)",
}


@dataclass(frozen=True)
class IssuedControl:
    mrid: str
    program: str  # the server's program id
    program_key: str | None  # its mRID, as devices know it
    sent: float  # monotonic time the creating request left
    offset: float  # seconds after the start of the run
    start: int  # server instant the control starts


def control_report(issued: IssuedControl, members: Sequence[Device]) -> dict[str, Any]:
    """Fetch and "received" delays, in seconds from the creating request, over ``members``
    (the devices in the control's program)."""
    mrid = issued.mrid
    fetched = []
    received = []
    for device in members:
        if device.fetched is not None and mrid in device.fetched:
            fetched.append(max(0.0, device.fetched[mrid] - issued.sent))
        firsts = [t for m, s, t in device.posted if m == mrid and s == 1]
        if firsts:
            received.append(max(0.0, min(firsts) - issued.sent))

    def part(values: list[float]) -> dict[str, Any]:
        everyone = len(values) == len(members) and bool(members)
        return {
            "devices": len(values),
            "all": everyone,
            "all_within_s": round(max(values), 3) if everyone else None,
            "seconds": percentiles(values),
        }

    return {
        "mRID": mrid,
        "program": issued.program,
        "issued_at_s": round(issued.offset, 3),
        "start": issued.start,
        "devices": len(members),
        "fetched": part(fetched),
        "received": part(received),
    }


def request_report(stats: RequestStats, elapsed: float) -> dict[str, Any]:
    gets = sum(s.count for k, s in stats.kinds.items() if k.startswith("GET "))
    not_modified = sum(
        s.outcomes.get("304", 0) for k, s in stats.kinds.items() if k.startswith("GET ")
    )
    return {
        "totals": {
            "requests": stats.total,
            "per_second": round(stats.total / elapsed, 1) if elapsed > 0 else None,
            "gets": gets,
            "not_modified": not_modified,
            "not_modified_share": round(not_modified / gets, 4) if gets else None,
            "errors": stats.errors(),
            "latency_ms": stats.overall_latency().summary(),
        },
        "by_kind": stats.by_kind(),
    }


# -- text ------------------------------------------------------------------------------------


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _spread(part: dict[str, Any]) -> str:
    seconds = part.get("seconds", {})
    if not seconds.get("count"):
        return "none"
    return (
        f"p50 {seconds['p50']} s, p90 {seconds['p90']} s, p99 {seconds['p99']} s, "
        f"max {seconds['max']} s"
    )


def render(summary: dict[str, Any]) -> str:
    """The summary as text for a terminal."""
    run = summary["run"]
    lines = [
        f"csip fleet: {run['devices']:,} devices ({run['identity']}) against {run['server']}, "
        f"{run['elapsed_s']} s at time compression {run['time_compression']:g}"
        + (" (ended early by Ctrl-C)" if run["interrupted"] else ""),
    ]
    devices = summary["devices"]
    line = f"devices: {devices['discovered']:,} discovered"
    if devices.get("all_discovered_at_s") is not None:
        line += f" (all by +{devices['all_discovered_at_s']} s)"
    if devices["not_discovered"]:
        line += f", {devices['not_discovered']:,} not"
    if devices["discovery_failures"]:
        failures = ", ".join(f"{k} ({v})" for k, v in devices["discovery_failures"].items())
        line += f"; discovery failures: {failures}"
    lines.append(line)
    if summary.get("registration"):
        reg = summary["registration"]
        lines.append(
            f"registration ({reg['mode']}): {reg['created']:,} created, {reg['updated']:,} "
            f"updated, {reg['unchanged']:,} unchanged, {reg['failed']:,} failed "
            f"in {reg['seconds']} s"
        )
    totals = summary["requests"]["totals"]
    share = totals["not_modified_share"]
    lines.append(
        f"requests: {totals['requests']:,} ({totals['per_second']}/s); "
        f"GETs {totals['gets']:,}, "
        + (f"{share:.1%} not modified (304)" if share is not None else "none")
        + f"; errors: {sum(totals['errors'].values()):,}"
        + (
            f" ({', '.join(f'{k}: {v:,}' for k, v in totals['errors'].items())})"
            if totals["errors"]
            else ""
        )
    )
    header = ("kind", "count", "200/2xx", "304", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms")
    rows = [header]
    for kind, entry in summary["requests"]["by_kind"].items():
        latency = entry["latency_ms"]
        rows.append(
            (
                kind,
                _n(entry["count"]),
                _n(entry.get("full", entry.get("ok", 0))),
                _n(entry.get("not_modified", "")),
                _n(sum(entry["errors"].values())),
                _n(latency.get("p50", "")),
                _n(latency.get("p90", "")),
                _n(latency.get("p99", "")),
                _n(latency.get("max", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lag = summary["schedule_lag_s"]
    if lag.get("count"):
        lines.append(f"schedule lag: p50 {lag['p50']} s, p99 {lag['p99']} s, max {lag['max']} s")
    responses = summary["responses"]
    posted = ", ".join(
        f"{STATUS_NAMES.get(int(k), k)} {v:,}" for k, v in responses["posted"].items()
    )
    lines.append(
        f"responses posted: {posted or 'none'}"
        + (f"; refused: {responses['refused']}" if responses["refused"] else "")
        + (f"; still waiting: {responses['waiting']:,}" if responses["waiting"] else "")
    )
    control = summary.get("control")
    if control:
        for what in ("fetched", "received"):
            part = control[what]
            label = "fetched it" if what == "fetched" else "posted received (1)"
            verdict = (
                f"all {control['devices']:,} within {part['all_within_s']} s"
                if part["all"]
                else f"{part['devices']:,} of {control['devices']:,}"
            )
            lines.append(
                f"control {control['mRID'][:8]}... ({control['program']}, issued at "
                f"+{control['issued_at_s']} s): {label}: {verdict}; {_spread(part)}"
            )
    verification = summary.get("verification")
    if verification:
        lines.append(
            f"server's view of {verification['sampled_devices']:,} devices at instant "
            f"{verification['at']}: {verification['disagreements']:,} disagreement"
            + ("" if verification["disagreements"] == 1 else "s")
            + (f" {verification['by_kind']}" if verification["disagreements"] else "")
            + f"; {verification['compared_controls']:,} (device, control) pairs compared"
            + (
                f", {verification['unseen_controls']:,} never fetched"
                if verification["unseen_controls"]
                else ""
            )
            + (
                f", {verification['preexisting_controls']:,} from before the run (posts only)"
                if verification.get("preexisting_controls")
                else ""
            )
        )
        for example in verification["examples"][:5]:
            lines.append(f"  {example['kind']}: {example['lfdi'][:12]}... {example['detail']}")
    elif summary.get("verification_skipped"):
        lines.append(f"server's view not compared: {summary['verification_skipped']}")
    fleet = summary.get("fleet") or {}
    if fleet.get("cpu_s") is not None:
        lines.append(
            f"fleet itself: {fleet['cpu_s']} s of CPU ({fleet['cpu_ms_per_request']} ms per "
            f"request), {fleet['max_rss_mb']} MB resident at most"
        )
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
