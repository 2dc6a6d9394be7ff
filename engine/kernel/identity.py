"""Device identity from its certificate (CSIP_RULES §7).

LFDI: the first 20 bytes of SHA-256 over the DER encoding of the device certificate, as 40 hex
digits (upper-case; compare case-insensitively). SFDI: the first 36 bits of the LFDI as a decimal
number followed by a check digit that makes the sum of all digits a multiple of 10.
"""

from __future__ import annotations

from hashlib import sha256

from engine.kernel.errors import InvalidInput


def lfdi_from_certificate(der: bytes) -> str:
    """The LFDI of a certificate given in DER encoding."""
    return sha256(der).digest()[:20].hex().upper()


def normalize_lfdi(lfdi: str) -> str:
    """An LFDI in its canonical (upper-case) form; refuses anything but 40 hex digits."""
    text = lfdi.strip()
    if len(text) != 40:
        raise InvalidInput(f"an LFDI has 40 hex digits, not {len(text)}: {lfdi!r}")
    # ``bytes.fromhex`` takes hex digit pairs and nothing else but whitespace between pairs,
    # which would leave fewer than 20 bytes of 40 characters. Unlike ``int(text, 16)``, no "0x"
    # prefix, sign or "_" passes, and it is one pass in C (a fold checks two LFDIs per device
    # input).
    try:
        digits = len(bytes.fromhex(text))
    except ValueError:
        digits = 0
    if digits != 20:
        raise InvalidInput(f"an LFDI is hexadecimal: {lfdi!r}")
    return text.upper()


def sfdi_from_lfdi(lfdi: str) -> int:
    """The SFDI of an LFDI (at most 12 digits; print zero-padded to 12)."""
    head = int(normalize_lfdi(lfdi)[:9], 16)  # 9 hex digits = the first 36 bits
    check = -sum(int(digit) for digit in str(head)) % 10
    return head * 10 + check
