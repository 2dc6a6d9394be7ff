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
RESPONSE_SET_LIST = "/rsps"
RESPONSE_SET = "/rsps/{program}"
RESPONSE_LIST = "/rsps/{program}/rsp"  # a control's replyTo
RESPONSE = "/rsps/{program}/rsp/{response}"
SUBSCRIPTION_LIST = "/edev/{edev}/sub"
SUBSCRIPTION = "/edev/{edev}/sub/{subscription}"
DER_LIST = "/edev/{edev}/der"
DER = "/edev/{edev}/der/{der}"
DER_CAPABILITY = "/edev/{edev}/der/{der}/dercap"
DER_SETTINGS = "/edev/{edev}/der/{der}/derg"
DER_STATUS = "/edev/{edev}/der/{der}/ders"
DER_AVAILABILITY = "/edev/{edev}/der/{der}/dera"
LOG_EVENT_LIST = "/edev/{edev}/lel"
LOG_EVENT = "/edev/{edev}/lel/{event}"
CONNECTION_POINT = "/edev/{edev}/cp"  # CSIP-AUS
MUP_LIST = "/mup"
MUP = "/mup/{mup}"


def edev(edev_id: int) -> str:
    return EDEV.format(edev=edev_id)


def connection_point(edev_id: int) -> str:
    return CONNECTION_POINT.format(edev=edev_id)


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


def response_set(program: str) -> str:
    return RESPONSE_SET.format(program=program)


def response(program: str, number: int) -> str:
    return RESPONSE.format(program=program, response=number)


def subscription_list(edev_id: int) -> str:
    return SUBSCRIPTION_LIST.format(edev=edev_id)


def subscription(edev_id: int, subscription_id: int) -> str:
    return SUBSCRIPTION.format(edev=edev_id, subscription=subscription_id)


def der_list(edev_id: int) -> str:
    return DER_LIST.format(edev=edev_id)


def der(edev_id: int, number: int = 1) -> str:
    return DER.format(edev=edev_id, der=number)


def der_resource(edev_id: int, kind: str, number: int = 1) -> str:
    path = {
        "capability": DER_CAPABILITY,
        "settings": DER_SETTINGS,
        "status": DER_STATUS,
        "availability": DER_AVAILABILITY,
    }[kind]
    return path.format(edev=edev_id, der=number)


def log_event_list(edev_id: int) -> str:
    return LOG_EVENT_LIST.format(edev=edev_id)


def log_event(edev_id: int, number: int) -> str:
    return LOG_EVENT.format(edev=edev_id, event=number)


def mup(mup_id: int) -> str:
    return MUP.format(mup=mup_id)
