"""The CSIP resolution kernel: pure, deterministic, sans-IO (CSIP_RULES §1-§7).

``Engine`` takes inputs at instants and returns outputs; ``next_change()`` tells when to call it
again. See ``device.py`` for the theory of operation and ``docs/semantics.md`` for how each rule
is read.
"""

from engine.kernel.draw import draw
from engine.kernel.engine import Engine, expand
from engine.kernel.errors import InvalidInput, TimeWentBackwards
from engine.kernel.identity import lfdi_from_certificate, normalize_lfdi, sfdi_from_lfdi
from engine.kernel.inputs import (
    KEEP,
    AddControl,
    AddCurve,
    CancelControl,
    DefineProgram,
    Input,
    RemoveDevice,
    SetDefault,
    SetMembership,
    SetPrimacy,
)
from engine.kernel.model import Curve, DefaultControl, DERControl
from engine.kernel.outputs import EffectiveChange, EventStatusChange, Output, ResponseDue

__all__ = [
    "KEEP",
    "AddControl",
    "AddCurve",
    "CancelControl",
    "Curve",
    "DERControl",
    "DefaultControl",
    "DefineProgram",
    "EffectiveChange",
    "Engine",
    "EventStatusChange",
    "Input",
    "InvalidInput",
    "Output",
    "RemoveDevice",
    "ResponseDue",
    "SetDefault",
    "SetMembership",
    "SetPrimacy",
    "TimeWentBackwards",
    "draw",
    "expand",
    "lfdi_from_certificate",
    "normalize_lfdi",
    "sfdi_from_lfdi",
]
