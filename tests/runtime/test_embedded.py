"""The embedded runtime's write path: group commit, batches, and what survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.kernel.identity import sfdi_from_lfdi
from engine.runtime.embedded.runtime import EmbeddedRuntime
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import Executed


def _lfdi(n: int) -> str:
    return f"{n:040X}"


def _register(n: int) -> c.RegisterDevice:
    return c.RegisterDevice(_lfdi(n), sfdi_from_lfdi(_lfdi(n)), "admin")


def test_concurrent_writes_share_synced_appends_and_all_survive_a_restart(tmp_path: Path) -> None:
    appends: list[int] = []

    async def main() -> None:
        runtime = EmbeddedRuntime(tmp_path)
        await runtime.start()
        append = runtime.store.append

        def counting_append(entries, views):  # type: ignore[no-untyped-def]
            appends.append(len(entries))
            return append(entries, views)

        runtime.store.append = counting_append  # type: ignore[method-assign]
        await asyncio.gather(*(runtime.submit(_register(n)) for n in range(1, 201)))
        await runtime.stop()

    asyncio.run(main())
    assert sum(appends) == 200
    assert len(appends) < 200  # commands folded during a write went out together

    async def reopen() -> set[str]:
        runtime = EmbeddedRuntime(tmp_path)
        await runtime.start()
        try:
            return set(runtime.registry.devices)
        finally:
            await runtime.stop()

    assert asyncio.run(reopen()) == {_lfdi(n) for n in range(1, 201)}


def test_submit_many_gives_one_verdict_per_command_in_order(tmp_path: Path) -> None:
    async def main() -> list[Executed | Rejected]:
        runtime = EmbeddedRuntime(tmp_path)
        await runtime.start()
        try:
            await runtime.submit(_register(1))
            return await runtime.submit_many(
                [
                    _register(2),
                    c.SetDeviceFSAs(_lfdi(99), [{"mRID": "A" * 32, "programs": []}]),
                    _register(3),
                ]
            )
        finally:
            await runtime.stop()

    verdicts = asyncio.run(main())
    assert isinstance(verdicts[0], Executed)
    assert isinstance(verdicts[1], Rejected) and verdicts[1].status == 404
    assert isinstance(verdicts[2], Executed)


def test_a_refused_command_is_not_logged(tmp_path: Path) -> None:
    async def main() -> int:
        runtime = EmbeddedRuntime(tmp_path)
        await runtime.start()
        try:
            await runtime.submit_many([c.DeleteDevice(_lfdi(7))])
            return runtime.store.last_seq
        finally:
            await runtime.stop()

    assert asyncio.run(main()) == 0


def test_a_checkpoint_never_holds_a_command_that_is_not_on_the_log(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = EmbeddedRuntime(tmp_path, checkpoint_every=7, checkpoint_interval=0)
        await runtime.start()
        for start in range(1, 100, 10):
            await asyncio.gather(*(runtime.submit(_register(n)) for n in range(start, start + 10)))
        checkpoint = runtime.store.load_checkpoint()
        assert checkpoint is not None
        assert checkpoint["seq"] > 0
        assert len(checkpoint["registry"]["devices"]) == checkpoint["seq"]  # one device each
        await runtime.stop()

    asyncio.run(main())

    async def reopen() -> int:
        runtime = EmbeddedRuntime(tmp_path)
        await runtime.start()
        try:
            return len(runtime.registry.devices)
        finally:
            await runtime.stop()

    assert asyncio.run(reopen()) == 100
