"""Every URI the 2030.5 server serves, in one table (routes and links use these, never literals).

Shared resources (a program, its controls, default and curves) have one URI for all member
devices, so they are rendered once and cached; per-device resources hang under the device's
EndDevice.
"""

from __future__ import annotations

DCAP = "/dcap"
TIME = "/tm"
EDEV_LIST = "/edev"
EDEV = "/edev/{edev}"
REGISTRATION = "/edev/{edev}/rg"
FSA_LIST = "/edev/{edev}/fsa"
FSA = "/edev/{edev}/fsa/{fsa}"
FSA_DERP_LIST = "/edev/{edev}/fsa/{fsa}/derp"
DERP = "/derp/{program}"
DERC_LIST = "/derp/{program}/derc"
DERC = "/derp/{program}/derc/{mrid}"
ACTIVE_DERC_LIST = "/derp/{program}/actderc"
DEFAULT_DERC = "/derp/{program}/dderc"
CURVE_LIST = "/derp/{program}/dc"
CURVE = "/derp/{program}/dc/{curve}"
RESPONSE_LIST = "/rsps/{program}/rsp"  # a control's replyTo


def edev(edev_id: int) -> str:
    return EDEV.format(edev=edev_id)


def registration(edev_id: int) -> str:
    return REGISTRATION.format(edev=edev_id)


def fsa_list(edev_id: int) -> str:
    return FSA_LIST.format(edev=edev_id)


def fsa(edev_id: int, index: int) -> str:
    return FSA.format(edev=edev_id, fsa=index)


def fsa_derp_list(edev_id: int, index: int) -> str:
    return FSA_DERP_LIST.format(edev=edev_id, fsa=index)


def derp(program: str) -> str:
    return DERP.format(program=program)


def derc_list(program: str) -> str:
    return DERC_LIST.format(program=program)


def derc(program: str, mrid: str) -> str:
    return DERC.format(program=program, mrid=mrid)


def active_derc_list(program: str) -> str:
    return ACTIVE_DERC_LIST.format(program=program)


def default_derc(program: str) -> str:
    return DEFAULT_DERC.format(program=program)


def curve_list(program: str) -> str:
    return CURVE_LIST.format(program=program)


def curve(program: str, curve_mrid: str) -> str:
    return CURVE.format(program=program, curve=curve_mrid)


def response_list(program: str) -> str:
    return RESPONSE_LIST.format(program=program)
