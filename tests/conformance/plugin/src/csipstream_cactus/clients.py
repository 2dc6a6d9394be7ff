"""Who a cactus client is at csipstream.

A *device* client's certificate LFDI is its EndDevice's LFDI. An *aggregator* client speaks
with the aggregator's certificate (whose LFDI names the aggregator and its own EndDevice) on
behalf of a DER whose LFDI is the client's configured ``lfdi``; csipstream registers that DER
as an EndDevice managed by the aggregator. The aggregator's id at csipstream is derived from
the client id, so a run needs no other configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cactus_client.model.config import ClientConfig
from cactus_client.sep2 import lfdi_from_cert_file
from cactus_test_definitions.server.test_procedures import ClientType


@dataclass(frozen=True)
class CsipClient:
    alias: str  # cactus's client id
    kind: ClientType
    lfdi: str  # the EndDevice the procedure is about (the DER, for an aggregator)
    certificate_lfdi: str  # who speaks (the aggregator's own LFDI, for an aggregator)
    pin: int

    @property
    def aggregator(self) -> str | None:
        """csipstream's aggregator id, for an aggregator client."""
        if self.kind != ClientType.AGGREGATOR:
            return None
        return "cactus-" + re.sub(r"[^A-Za-z0-9_.-]", "-", self.alias)[:50]

    @property
    def short(self) -> str:
        """A short stable tag for names of things made for this client (program ids)."""
        return self.lfdi[:10]


def resolve(config: ClientConfig) -> CsipClient:
    return CsipClient(
        alias=config.id,
        kind=ClientType(config.type),
        lfdi=config.lfdi.upper(),
        certificate_lfdi=lfdi_from_cert_file(config.certificate_file).upper(),
        pin=config.pin,
    )
