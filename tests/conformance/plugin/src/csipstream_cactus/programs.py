"""ensure-fsa, ensure-der-program, ensure-der-control-list: a client's FSAs and DERPrograms.

Each client gets its own programs (ids ``cactus-<lfdi prefix>-<n>``), so two clients of one
procedure never see each other's controls. A procedure names FSAs by *annotation*; csipstream
keeps the annotation as the FSA's description, so the mapping lives on the server, not in
this process. ``PUT /admin/devices/{lfdi}/fsas`` replaces the whole list, so every change
re-sends the existing FSAs with their mRIDs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from csipstream_cactus.admin_api import AdminApi, segment
from csipstream_cactus.clients import CsipClient
from csipstream_cactus.registration import InstructionFailed, device

DEFAULT_ANNOTATION = "cactus"  # the FSA made when a procedure needs one but names none
DEFAULT_PRIMACY = 1


@dataclass
class Fsa:
    mrid: str | None  # None: csipstream names it (from the EndDevice and the FSA's position)
    annotation: str
    programs: list[str] = field(default_factory=list)


@dataclass
class ClientPrograms:
    """A client's FSAs and the primacy of each of its programs, read from csipstream."""

    client: CsipClient
    fsas: list[Fsa]
    primacy: dict[str, int]

    def all_programs(self) -> list[str]:
        return list(dict.fromkeys(p for fsa in self.fsas for p in fsa.programs))

    def by_annotation(self, annotation: str) -> Fsa | None:
        return next((f for f in self.fsas if f.annotation == annotation), None)

    def with_primacy(self, primacy: int) -> str | None:
        return next((p for p in self.all_programs() if self.primacy.get(p) == primacy), None)


async def load(api: AdminApi, client: CsipClient) -> ClientPrograms:
    record = await device(api, client)
    if record is None:
        raise InstructionFailed(
            f"no EndDevice {client.lfdi} at csipstream (ensure-end-device registered=true first)"
        )
    fsas = [Fsa(f["mRID"], f.get("description", ""), list(f["programs"])) for f in record["fsas"]]
    primacy = {p["program"]: p["primacy"] for p in await api.get("/programs")}
    return ClientPrograms(client, fsas, primacy)


async def _save_fsas(api: AdminApi, state: ClientPrograms) -> None:
    body: list[dict[str, Any]] = []
    for fsa in state.fsas:
        item: dict[str, Any] = {"description": fsa.annotation, "programs": fsa.programs}
        if fsa.mrid is not None:
            item["mRID"] = fsa.mrid
        body.append(item)
    await api.put(f"/devices/{segment(state.client.lfdi)}/fsas", body)


async def ensure_fsa(api: AdminApi, client: CsipClient, annotation: str | None) -> ClientPrograms:
    """An FSA with that annotation (with no programs when new) is on the client's EndDevice."""
    state = await load(api, client)
    annotation = (annotation or DEFAULT_ANNOTATION)[:32]
    if state.by_annotation(annotation) is None:
        state.fsas.append(Fsa(None, annotation))  # appended: earlier FSAs keep their mRIDs
        await _save_fsas(api, state)
    return state


async def ensure_program(
    api: AdminApi, client: CsipClient, annotation: str | None, primacy: int | None
) -> str:
    """A program (of ``primacy`` when given) in the FSA ``annotation``; answers its id."""
    state = await ensure_fsa(api, client, annotation)
    fsa = state.by_annotation((annotation or DEFAULT_ANNOTATION)[:32])
    assert fsa is not None
    for program in fsa.programs:
        if primacy is None or state.primacy.get(program) == primacy:
            return program
    taken = set(state.primacy)
    number = 1
    while f"cactus-{client.short}-{number}" in taken:
        number += 1
    program = f"cactus-{client.short}-{number}"
    wanted = DEFAULT_PRIMACY if primacy is None else primacy
    await api.put(
        f"/programs/{segment(program)}",
        {"primacy": wanted, "description": f"cactus {fsa.annotation}"[:32]},
    )
    fsa.programs.append(program)
    await _save_fsas(api, state)
    return program


async def program_for(api: AdminApi, client: CsipClient, primacy: int | None) -> str:
    """The program a control or default goes to: the client's program of that primacy (made
    in the default FSA if missing), else its first program (made if it has none)."""
    state = await load(api, client)
    if primacy is not None:
        found = state.with_primacy(primacy)
        if found is not None:
            return found
        return await ensure_program(api, client, None, primacy)
    programs = state.all_programs()
    if programs:
        return programs[0]
    return await ensure_program(api, client, None, None)


async def ensure_control_list(api: AdminApi, client: CsipClient, params: dict[str, Any]) -> None:
    """The client can reach a DERControlList: it belongs to at least one program.

    Every csipstream DERControlList may be subscribed to by an aggregator that can read it
    (docs/server.md), so ``subscribable`` needs nothing more for an aggregator; a device
    client has no allowed notification hosts, so its subscriptions would be refused.
    """
    if params.get("subscribable") and client.aggregator is None:
        raise InstructionFailed(
            f"ensure-der-control-list subscribable=true for device client {client.alias}: "
            "csipstream accepts a notificationURI only on an aggregator's allowed hosts "
            "(PUT /admin/aggregators/{id}/notification-hosts); a device has none"
        )
    await program_for(api, client, None)
