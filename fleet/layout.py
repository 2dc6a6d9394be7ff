"""The program layout a fleet is set up with: which DERPrograms exist and who belongs to which.

``--programs system,substation-4,feeder-16`` reads as three groups: one program ``system``,
four ``substation-1..4`` and sixteen ``feeder-1..16``. Every device gets one
FunctionSetAssignments per group (the group's name is the FSA's description) holding one
program of that group: device ``i`` (0-based) is in ``substation-(i mod 4 + 1)`` and
``feeder-(i mod 16 + 1)``. When each group's count divides the next one's, the layout is a
tree (feeder ``f`` is under substation ``(f - 1) mod 4 + 1``), as feeders are under substations.

Primacy (lower wins, CSIP_RULES §2.6) is ``name-count:primacy`` when given, else 10 for the first
group, 20 for the second, and so on: the first group named outranks the later ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,58}$")  # a program id is at most 64 characters
MAX_FSAS = 15  # CSIP: a device has at most 15 FunctionSetAssignments


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    count: int
    primacy: int

    def programs(self) -> list[str]:
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{n}" for n in range(1, self.count + 1)]

    def program_of(self, index: int) -> str:
        if self.count == 1:
            return self.name
        return f"{self.name}-{index % self.count + 1}"


@dataclass(frozen=True, slots=True)
class Layout:
    groups: tuple[Group, ...]

    @classmethod
    def parse(cls, spec: str) -> Layout:
        """``system,substation-4,feeder-16:5``: groups, counts and optional primacies."""
        groups: list[Group] = []
        names: set[str] = set()
        for position, raw in enumerate(part.strip() for part in spec.split(",")):
            if not raw:
                continue
            name, _, primacy_text = raw.partition(":")
            count = 1
            stem, _, tail = name.rpartition("-")
            if stem and tail.isdigit():
                name, count = stem, int(tail)
            if not _NAME.match(name) or (primacy_text and not primacy_text.isdigit()):
                raise ValueError(
                    f"not a program group: {raw!r} (write NAME, NAME-COUNT or NAME-COUNT:PRIMACY)"
                )
            primacy = int(primacy_text) if primacy_text else 10 * (position + 1)
            if count < 1:
                raise ValueError(f"{raw!r}: a group has at least one program")
            if primacy > 255:
                raise ValueError(f"{raw!r}: primacy is a UInt8 (0-255)")
            if name in names:
                raise ValueError(f"program group {name!r} appears twice")
            names.add(name)
            groups.append(Group(name, count, primacy))
        if not groups:
            raise ValueError("the layout names no program")
        if len(groups) > MAX_FSAS:
            raise ValueError(f"at most {MAX_FSAS} groups: a device has at most {MAX_FSAS} FSAs")
        programs = [p for g in groups for p in g.programs()]
        if len(set(programs)) != len(programs):
            raise ValueError("two groups make programs of the same name")
        return cls(tuple(groups))

    def programs(self) -> list[tuple[str, int, str]]:
        """Every program: (id, primacy, description)."""
        return [(p, g.primacy, p[:32]) for g in self.groups for p in g.programs()]

    def fsas(self, index: int) -> list[dict[str, Any]]:
        """The FSAs of device ``index``, as the admin API takes them."""
        return [
            {"description": g.name[:32], "programs": [g.program_of(index)]} for g in self.groups
        ]

    def memberships(self, index: int) -> tuple[str, ...]:
        return tuple(g.program_of(index) for g in self.groups)
