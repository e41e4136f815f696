"""What every admin change does after (or instead of) storing it: shown in this process at
once, or refused as a whole while Redis is away."""

from __future__ import annotations

import logging

from aiohttp import web

from adserver.delivery.market_cache import MarketCache
from adserver.http.app_keys import METRICS
from adserver.http.responses import json_error
from adserver.store import RedisError

log = logging.getLogger(__name__)


def store_unavailable(request: web.Request, exc: BaseException) -> web.Response:
    """Redis did not take the change (down, or timing out): nothing was changed, try again."""
    log.warning("%s %s: storage unavailable: %r", request.method, request.path, exc)
    request.app[METRICS].store_errors.labels(f"admin_{request.method.lower()}").inc()
    response = json_error(503, "storage unavailable, nothing was changed; try again shortly")
    response.headers["Retry-After"] = "5"
    return response


async def refresh_quietly(market: MarketCache) -> None:
    """Show a change stored a moment ago in this process now; if Redis does not answer, the
    background refresh shows it within a second or so."""
    try:
        await market.refresh()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("market refresh after a change failed: %r", exc)
