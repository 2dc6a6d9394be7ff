"""Demo data for ``make run``: two programs, a curve, defaults, controls, devices, an aggregator.

Loaded through the same commands as the admin API, so it is on the log like anything else.
"""

from __future__ import annotations

from hashlib import blake2b

from engine.runtime.embedded.runtime import EmbeddedRuntime
from engine.state import commands as c
from gateway.pki import Pki


def _mrid(name: str) -> str:
    return blake2b(name.encode(), digest_size=16).hexdigest().upper()


async def load_demo(runtime: EmbeddedRuntime, pki: Pki) -> None:
    now = runtime.now()
    submit = runtime.submit
    await submit(c.PutProgram("system", 10, _mrid("program/system"), "system-wide"))
    await submit(c.PutProgram("feeder-1", 5, _mrid("program/feeder-1"), "feeder 1"))
    await submit(
        c.SetDefaultControl(
            "system",
            {"opModMaxLimW": 10000, "opModConnect": True, "setGradW": 1000},
            _mrid("default/system"),
            "system default",
        )
    )
    await submit(
        c.PutCurve(
            "system",
            {
                "mRID": _mrid("curve/volt-var"),
                "curveType": 11,
                "yRefType": 2,
                "points": [[9200, 3000], [9700, 0], [10300, 0], [10800, -3000]],
                "xMultiplier": -2,
                "yMultiplier": -2,
            },
            "volt-var",
        )
    )
    await submit(
        c.CreateControls(
            [
                {
                    "program": "feeder-1",
                    "mRID": _mrid("control/feeder-1/curtail"),
                    "description": "curtail to 50%",
                    "start": now + 300,
                    "duration": 1800,
                    "responseRequired": "03",
                    "base": {"opModMaxLimW": 5000},
                },
                {
                    "program": "system",
                    "mRID": _mrid("control/system/volt-var"),
                    "description": "volt-var",
                    "start": now + 3600,
                    "duration": 7200,
                    "randomizeStart": 120,
                    "responseRequired": "03",
                    "base": {"opModVoltVar": {"curve": _mrid("curve/volt-var")}},
                },
            ]
        )
    )
    aggregator = pki.of_kind("aggregator")[0]
    await submit(
        c.PutAggregator("aggregator1", aggregator.lfdi, aggregator.sfdi, "demo aggregator")
    )
    devices = pki.of_kind("device")
    fsas = [
        {"mRID": _mrid("fsa/system"), "description": "system", "programs": ["system"]},
        {"mRID": _mrid("fsa/feeder-1"), "description": "feeder 1", "programs": ["feeder-1"]},
    ]
    for device in devices[:-1]:
        await submit(c.RegisterDevice(device.lfdi, device.sfdi, "admin", pin=111115))
        await submit(c.SetDeviceFSAs(device.lfdi, fsas))
    # The last device is left for the aggregator to register in-band.
    managed = devices[-1]
    await submit(c.Authorize(managed.lfdi, True, "aggregator1", 222220))
