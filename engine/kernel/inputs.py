"""Inputs: everything that can change what a device must do (ARCHITECTURE: every fact is an event).

Each input is applied at an instant given by the caller. Operator inputs (programs, controls,
defaults, curves) come from the utility; membership inputs from registration and FSA changes.

The inputs made once per device input (``SetMembership``, ``RemoveDevice``) write their
``__init__`` out (``dataclass`` keeps it): in the compiled kernel (``engine/compiled.py``) the
``__init__`` a dataclass generates runs as Python, about 1 µs per frozen instance, and a
written one is compiled (about 0.05 µs). ``tests/kernel/test_constructors.py`` checks each such
``__init__`` against the fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.kernel.model import Curve, DefaultControl, DERControl


@dataclass(frozen=True, slots=True)
class DefineProgram:
    """Create a DERProgram (or change the primacy of an existing one)."""

    program: str
    primacy: int


@dataclass(frozen=True, slots=True)
class SetPrimacy:
    program: str
    primacy: int


@dataclass(frozen=True, slots=True)
class SetDefault:
    """Replace a program's DefaultDERControl; ``None`` removes it."""

    program: str
    default: DefaultControl | None


@dataclass(frozen=True, slots=True)
class AddCurve:
    program: str
    curve: Curve


@dataclass(frozen=True, slots=True)
class AddControl:
    """A new DERControl in its program's DERControlList."""

    control: DERControl


@dataclass(frozen=True, slots=True)
class CancelControl:
    """The operator cancels a control: status 2, or 3 when it has any randomization."""

    program: str
    mrid: str


KEEP = -1  # SetMembership.category: leave the device's category as it is


@dataclass(frozen=True, slots=True)
class SetMembership:
    """Replace a device's program set (union of its FSAs' programs, in membership order).

    ``category`` is the device's deviceCategory bitmap, ``None`` for none, ``KEEP`` to leave it.
    """

    lfdi: str
    programs: tuple[str, ...]
    category: int | None = KEEP

    def __init__(self, lfdi: str, programs: tuple[str, ...], category: int | None = KEEP) -> None:
        object.__setattr__(self, "lfdi", lfdi)
        object.__setattr__(self, "programs", programs)
        object.__setattr__(self, "category", category)


@dataclass(frozen=True, slots=True)
class RemoveDevice:
    """The device is deleted: its programs stop applying (14) and its state is dropped."""

    lfdi: str

    def __init__(self, lfdi: str) -> None:
        object.__setattr__(self, "lfdi", lfdi)


Input = (
    DefineProgram
    | SetPrimacy
    | SetDefault
    | AddCurve
    | AddControl
    | CancelControl
    | SetMembership
    | RemoveDevice
)
