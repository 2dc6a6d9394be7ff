"""The worker's record values (engine/runtime/kafka/encode.py) are exactly
``orjson.dumps({"v": schema, **record})`` of each of an output's ``records()``: for the outputs of
every scenario and of the Kafka benchmark's workload, and for strings JSON must escape."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks.bench_kafka import Fleet, catalog_commands, member_commands
from benchmarks.bench_worker_fold import worker
from engine.kernel import Engine, Output
from engine.kernel.modes import freeze
from engine.kernel.outputs import EffectiveChange, EventStatusChange, ResponseDue
from engine.replay import Scenario
from engine.runtime.kafka.encode import Encoder, by_partition
from engine.runtime.kafka.fold import fold_records
from engine.state.registry import Executed
from topics.catalog import partition_for

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.json"))
LFDIS = ("D1D907752314F590E9DFC8A604E3339D662D719F", "0" * 40)


def expected(output: EffectiveChange | ResponseDue, schema: int) -> list[tuple[str, bytes]]:
    return [(r["lfdi"], orjson.dumps({"v": schema, **r})) for r in output.records()]


def device_outputs(outputs: list[Output]) -> list[EffectiveChange | ResponseDue]:
    return [o for o in outputs if isinstance(o, EffectiveChange | ResponseDue)]


def scenario_outputs() -> list[EffectiveChange | ResponseDue]:
    found: list[EffectiveChange | ResponseDue] = []
    for path in SCENARIOS:
        engine = Engine()
        for t, inputs in Scenario.load(path).batches:
            found += device_outputs(engine.apply(t, inputs))
    return found


def bench_outputs() -> list[EffectiveChange | ResponseDue]:
    registry, kernel = worker(12)
    fleet = Fleet(300)
    records = catalog_commands(2) + member_commands(300)
    records += [fleet.enroll() for _ in range(50)] + [fleet.move() for _ in range(50)]
    found: list[EffectiveChange | ResponseDue] = []
    for verdict in fold_records(registry, kernel, records):
        assert isinstance(verdict, Executed)
        found += device_outputs(verdict.outputs)
    return found


def test_values_are_the_records_dumped_for_every_scenario_and_the_bench() -> None:
    outputs = scenario_outputs()
    assert SCENARIOS and outputs
    outputs += bench_outputs()
    kinds = {type(o) for o in outputs}
    assert kinds == {EffectiveChange, ResponseDue}
    assert any(len(o.lfdis) > 1 for o in outputs)
    encoder = Encoder(1)  # one for all: equal changes of other cohorts reuse their pieces
    for output in outputs:
        assert encoder.values(output) == expected(output, 1), output


@pytest.mark.parametrize(
    "text",
    ['quote " and backslash \\', "tab\tnewline\ncontrol\x01", "é ü 中文 😀", "slash / <b>", ""],
)
def test_strings_json_escapes(text: str) -> None:
    limit = freeze("opModExpLimW", {"value": 5, "multiplier": 3})
    outputs: list[EffectiveChange | ResponseDue] = [
        EffectiveChange(7, LFDIS, "opModExpLimW", limit, text, text),
        EffectiveChange(7, LFDIS, "opModConnect", freeze("opModConnect", False), text, None),
        EffectiveChange(8, LFDIS, "opModExpLimW", None, None, None),
        ResponseDue(9, LFDIS, text, text, 252, False),
        ResponseDue(9, LFDIS[:1], "AB" * 16, "P", 1, True),
    ]
    for schema in (1, 2):
        encoder = Encoder(schema)
        for output in outputs + outputs:  # made, then reused
            assert encoder.values(output) == expected(output, schema)


def test_lfdis_json_escapes_are_encoded_record_by_record() -> None:
    odd = ('QUOTE"' + "A" * 34, "é" * 40, "lower-case-with-dashes")
    limit = freeze("opModExpLimW", {"value": 5, "multiplier": 3})
    for output in (
        EffectiveChange(7, (*LFDIS, *odd), "opModExpLimW", limit, "P", "E"),
        ResponseDue(9, (*odd, *LFDIS), "AB" * 16, "P", 1, True),
    ):
        got = Encoder(1).values(output)
        assert got == expected(output, 1)
        assert [lfdi for lfdi, _ in got] == list(output.lfdis)
        assert orjson.loads(got[0][1])["lfdi"] == output.lfdis[0]


def test_records_by_partition_keep_each_partitions_order() -> None:
    outputs = scenario_outputs() + bench_outputs()
    status = EventStatusChange(5, "P", "AB" * 16, 1)  # not a device record: left out
    mixed: list[Output] = [status, *outputs, status]
    effective, lifecycle = by_partition(Encoder(1), mixed, 12)
    want: dict[type, dict[int, list[tuple[bytes, bytes]]]] = {EffectiveChange: {}, ResponseDue: {}}
    for output in outputs:
        for lfdi, value in expected(output, 1):
            by = want[type(output)].setdefault(partition_for(lfdi, 12), [])
            by.append((lfdi.encode(), value))
    assert effective == want[EffectiveChange] and lifecycle == want[ResponseDue]
    assert len(effective) > 1 and len(lifecycle) > 1  # the bench's devices spread over shards
