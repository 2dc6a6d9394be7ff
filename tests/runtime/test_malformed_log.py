"""A malformed record on ``csip.commands`` is refused, never stops the fold.

Every reader of the log (workers, gateway replicas, the embedded runtime) folds every record,
so a record that raised anything but ``Rejected`` would stop each of them at the same offset,
for good. Here every field of every input kind and command kind, and the nested fields of
controls, defaults and curves, gets values of the wrong shape; each record must come back as
``Rejected`` or ``Executed``. ``tests/kernel/test_compiled.py`` runs this file on the compiled
modules as well, where the classes check their fields' types themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from engine.kernel.identity import sfdi_from_lfdi
from engine.runtime.kafka.fold import fold
from engine.runtime.kafka.shards import ShardedKernel
from engine.state.errors import Rejected
from engine.state.registry import Executed, Registry

DEVICE = "A" * 40
AGGREGATOR = "B" * 40
BAD: list[Any] = [5, "x", None, [], {}, True, 1.5, [5], [[1]], ["x", 5], {"a": 1}, -1, 2**70, ""]
BASE = {"opModExpLimW": {"value": 1, "multiplier": 0}}
CONTROL = {"program": "Q", "mRID": "0C10", "start": 1000, "duration": 60, "base": BASE}
KERNEL_CONTROL = {
    **CONTROL,
    "program": "P",
    "creationTime": 900,
}  # an input's (engine/kernel/codec.py)
CURVE = {"mRID": "0A", "curveType": 0, "points": [[1, 2]]}
# What the commands below act on: programs P (an input) and Q, an aggregator, a device that it
# manages, a control and a subscription.
SETUP: list[dict[str, Any]] = [
    {"kind": "apply_inputs", "inputs": [{"input": "define_program", "program": "P", "primacy": 1}]},
    {"kind": "put_program", "program": "Q", "primacy": 3, "mrid": "A1"},
    {
        "kind": "put_aggregator",
        "aggregator": "agg1",
        "lfdi": AGGREGATOR,
        "sfdi": sfdi_from_lfdi(AGGREGATOR),
    },
    {
        "kind": "register_device",
        "lfdi": DEVICE,
        "sfdi": sfdi_from_lfdi(DEVICE),
        "aggregator": "agg1",
    },
    {"kind": "create_controls", "controls": [{**CONTROL, "mRID": "C9"}]},
    {
        "kind": "create_subscription",
        "lfdi": DEVICE,
        "subscriber": AGGREGATOR,
        "resource": "/edev/0/derp",
        "notification_uri": "https://example.com/n",
        "limit": 10,
    },
]
INPUTS: list[dict[str, Any]] = [
    {"input": "define_program", "program": "P", "primacy": 1},
    {"input": "set_primacy", "program": "P", "primacy": 2},
    {"input": "set_default", "program": "P", "default": BASE},
    {"input": "add_control", "control": KERNEL_CONTROL},
    {"input": "cancel_control", "program": "Q", "mrid": "C9"},
    {"input": "set_membership", "lfdi": DEVICE, "programs": ["P"], "category": None},
    {"input": "remove_device", "lfdi": DEVICE},
    {"input": "add_curve", "program": "P", "curve": CURVE},
]
COMMANDS: list[dict[str, Any]] = [
    {"kind": "put_program", "program": "P2", "primacy": 3, "mrid": "B2", "description": "d"},
    {"kind": "set_default_control", "program": "Q", "base": BASE, "mrid": "D1", "description": "d"},
    {"kind": "put_curve", "program": "Q", "curve": CURVE, "description": "d"},
    {"kind": "create_controls", "controls": [CONTROL]},
    {"kind": "cancel_control", "program": "Q", "mrid": "C9"},
    {
        "kind": "put_aggregator",
        "aggregator": "agg2",
        "lfdi": "C" * 40,
        "sfdi": sfdi_from_lfdi("C" * 40),
    },
    {"kind": "authorize", "lfdi": DEVICE, "allowed": True, "aggregator": None, "pin": 1234},
    {"kind": "set_registration_mode", "mode": "open"},
    {"kind": "register_device", "lfdi": "D" * 40, "sfdi": sfdi_from_lfdi("D" * 40), "pin": None},
    {"kind": "delete_device", "lfdi": DEVICE, "requested_by": None},
    {"kind": "set_device_fsas", "lfdi": DEVICE, "fsas": [{"mRID": "0F", "programs": ["Q"]}]},
    {"kind": "set_connection_point", "lfdi": DEVICE, "connection_point_id": "1234567890"},
    {"kind": "set_poll_rates", "rates": {"dcap": 300}},
    {"kind": "set_post_rates", "rates": {"mup": 300}},
    {"kind": "set_notification_hosts", "aggregator": "agg1", "hosts": ["example.com"]},
    {
        "kind": "create_subscription",
        "lfdi": DEVICE,
        "subscriber": AGGREGATOR,
        "resource": "/edev/0/fsa",
        "notification_uri": "https://example.com/n",
        "limit": 10,
        "level": "+S1",
    },
    {"kind": "end_subscription", "subscription": 1, "reason": "deleted", "requested_by": None},
    {"kind": "tick"},
]


def _record(command: Any, t: int = 200) -> bytes:
    return json.dumps({"v": 1, "id": "x", "t": t, "command": command}).encode()


def _fold_after_setup(command: Any) -> Executed | Rejected:
    registry, kernel = Registry(), ShardedKernel(12)
    for setup in SETUP:
        assert isinstance(fold(registry, kernel, _record(setup, 100)), Executed), setup
    return fold(registry, kernel, _record(command))


def _spoilt(good: dict[str, Any], skip: str) -> Iterator[dict[str, Any]]:
    for key in good:
        if key != skip:
            for bad in BAD:
                yield {**good, key: bad}


def _stopped(commands: Iterator[Any]) -> list[str]:
    stopped = []
    for command in commands:
        try:
            verdict = _fold_after_setup(command)
        except Exception as exc:
            stopped.append(f"{command!r}: {exc!r}")
        else:
            assert isinstance(verdict, Executed | Rejected)
    return stopped


def test_the_well_formed_records_here_are_executed() -> None:
    """So that the spoilt ones below are refused for their spoilt field, not for another."""
    for item in INPUTS:
        assert isinstance(_fold_after_setup({"kind": "apply_inputs", "inputs": [item]}), Executed)
    for command in COMMANDS:
        assert isinstance(_fold_after_setup(command), Executed), command


def test_malformed_inputs_are_refused() -> None:
    def records() -> Iterator[Any]:
        for bad in BAD:
            yield {"kind": "apply_inputs", "inputs": [bad]}
            yield {"kind": "apply_inputs", "inputs": bad}
        for item in INPUTS:
            for spoilt in _spoilt(item, "input"):
                yield {"kind": "apply_inputs", "inputs": [spoilt]}
        for control in _spoilt(KERNEL_CONTROL, ""):
            yield {"kind": "apply_inputs", "inputs": [{"input": "add_control", "control": control}]}
        for curve in _spoilt(CURVE, ""):
            yield {
                "kind": "apply_inputs",
                "inputs": [{"input": "add_curve", "program": "P", "curve": curve}],
            }
        for bad in BAD:
            for base in (
                {"opModExpLimW": bad},
                {"opModExpLimW": {"value": bad, "multiplier": 0}},
                {"opModVoltVar": bad},
                {"opModConnect": bad, "rampTms": bad},
            ):
                yield {
                    "kind": "apply_inputs",
                    "inputs": [
                        {
                            "input": "add_control",
                            "control": {**KERNEL_CONTROL, "base": base},
                        }
                    ],
                }
                yield {
                    "kind": "apply_inputs",
                    "inputs": [{"input": "set_default", "program": "P", "default": base}],
                }
            yield {
                "kind": "apply_inputs",
                "inputs": [
                    {"input": "add_curve", "program": "P", "curve": {**CURVE, "points": [[bad, 1]]}}
                ],
            }

    assert _stopped(records()) == []


def test_malformed_commands_are_refused() -> None:
    def records() -> Iterator[Any]:
        yield from BAD
        for command in COMMANDS:
            yield from _spoilt(command, "kind")
        for bad in BAD:
            yield {
                "kind": "set_device_fsas",
                "lfdi": DEVICE,
                "fsas": [{"mRID": "0F", "programs": bad}],
            }
            yield {
                "kind": "set_device_fsas",
                "lfdi": DEVICE,
                "fsas": [{"mRID": bad, "programs": ["Q"]}],
            }
            yield {"kind": "create_controls", "controls": [{**CONTROL, "program": bad}]}
            yield {"kind": "set_poll_rates", "rates": {"dcap": bad}}
            yield {"kind": "set_post_rates", "rates": {"mup": bad}}

    assert _stopped(records()) == []


def test_a_record_that_is_no_command_record_is_refused() -> None:
    registry, kernel = Registry(), ShardedKernel(12)
    for raw in (
        b"not json",
        b"[]",
        b"5",
        b'{"v": 1, "t": 100}',
        b'{"v": 1, "command": {"kind": "tick"}}',
        b'{"v": 1, "t": "100", "command": {"kind": "tick"}}',
        b'{"v": 1, "t": true, "command": {"kind": "tick"}}',
        b'{"v": 1, "t": 1e300, "command": {"kind": "tick"}}',
    ):
        assert isinstance(fold(registry, kernel, raw), Rejected), raw
    assert isinstance(fold(registry, kernel, _record({"kind": "tick"})), Executed)
