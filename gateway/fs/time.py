"""Time (/tm): UTC now, with the configured time zone's offset and daylight-saving window."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway import sep, uris
from gateway.context import Scope, client_scope, context
from gateway.http import xml_response

router = APIRouter()


@lru_cache(maxsize=64)
def dst_window(zone: str, year: int) -> tuple[int, int, int, int]:
    """(tzOffset, dstOffset, dstStartTime, dstEndTime) of a zone for a year, in seconds.

    tzOffset is the standard offset; dstOffset the extra offset during daylight saving; the
    window is found by bisecting the instants where the zone's offset changes. A zone without
    daylight saving has dstOffset 0 and an empty window at the start of the year.
    """
    tz = ZoneInfo(zone)
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())

    def offset(t: int) -> int:
        delta = datetime.fromtimestamp(t, tz).utcoffset()
        return 0 if delta is None else int(delta.total_seconds())

    def dst(t: int) -> int:
        delta = datetime.fromtimestamp(t, tz).dst()
        return 0 if delta is None else int(delta.total_seconds())

    changes: list[int] = []
    step = 86400
    t = start
    while t < end:
        if offset(t) != offset(min(t + step, end)):
            low, high = t, min(t + step, end)
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offset(low):
                    low = middle
                else:
                    high = middle
            changes.append(high)
        t += step
    daylight = max((dst(t) for t in [start, *changes]), default=0)
    standard = offset(start) - dst(start)
    if daylight == 0 or len(changes) < 2:
        return standard, 0, start, start
    first, second = changes[0], changes[1]
    # Northern hemisphere: DST begins at the first change; southern: it ends there.
    if dst(first) > 0:
        return standard, daylight, first, second
    return standard, daylight, second, first + (end - start)


@router.api_route(uris.TIME, methods=["GET", "HEAD"])
async def time(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    now = scope.now
    year = datetime.fromtimestamp(now, UTC).year
    tz_offset, dst_offset, dst_start, dst_end = dst_window(ctx.settings.timezone, year)
    in_dst = dst_start <= now < dst_end
    element = sep.time(
        href=uris.TIME,
        current_time=now,
        dst_end_time=dst_end,
        dst_offset=dst_offset,
        dst_start_time=dst_start,
        local_time=now + tz_offset + (dst_offset if in_dst else 0),
        quality=ctx.settings.time_quality,
        tz_offset=tz_offset,
        poll_rate=ctx.registry.poll_rates["time"],
    )
    return xml_response(request, element, keep=False)
