"""The deterministic randomization draw (CSIP_RULES §2.4).

``draw(lfdi, mRID, kind, R) = sign(R) * (u64 % (|R| + 1))`` where ``u64`` is the first 8 bytes,
big-endian, of SHA-256 of ``f"{LFDI}|{mRID}|{kind}"`` with LFDI and mRID upper-cased. A draw
depends on nothing but its arguments, so the utility and a replay can predict every device's
times.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Literal

DrawKind = Literal["start", "duration", "cancel"]


def draw(lfdi: str, mrid: str, kind: DrawKind, bound: int) -> int:
    """Seconds to add to a start, a duration or a cancel instant; 0 when ``bound`` is 0."""
    if bound == 0:
        return 0
    digest = sha256(f"{lfdi.upper()}|{mrid.upper()}|{kind}".encode()).digest()
    u64 = int.from_bytes(digest[:8], "big")
    magnitude = u64 % (abs(bound) + 1)
    return magnitude if bound > 0 else -magnitude
