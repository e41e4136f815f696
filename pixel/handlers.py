"""Shop-side endpoints: `/px` (the pixel), `/e` (tag batches) and `/tag.js`.

The pixel answers its GIF whatever happens, so a shop page never breaks; bad input is counted
by reason and stored nowhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib import resources

from aiohttp import web

from adserver.bodies import read_body
from adserver.context import EVENT_WRITER, MARKET, METRICS, SETTINGS
from adserver.responses import gif, javascript, json_error
from adserver.shopper import ShopperEvent
from pixel.events import (
    MAX_BATCH_BYTES,
    Reject,
    at_catalog_value,
    parse_batch,
    parse_pixel_query,
)
from pixel.identity import (
    consented,
    is_bot,
    is_secure_context,
    new_uid,
    opted_out,
    read_uid,
    set_uid_cookie,
)

log = logging.getLogger(__name__)

TAG_JS = resources.files("pixel").joinpath("static/tag.js").read_text(encoding="utf-8")
TAG_CACHE_SECONDS = 3600


async def _store(request: web.Request, events: Sequence[ShopperEvent]) -> str | None:
    """Record one shopper's events; returns the uid to (re)issue, or None if nothing stored."""
    app = request.app
    uid = read_uid(request.cookies) or new_uid()
    now = time.time()
    events = [at_catalog_value(e, app[MARKET].catalog(e.advertiser)) for e in events]
    if not await app[EVENT_WRITER].write([(uid, event, now) for event in events]):
        app[METRICS].events_buffered.inc(len(events))  # replayed when Redis answers again
        return uid
    for event in events:
        app[METRICS].events_stored.labels(event.kind).inc()
    return uid


def _with_uid(request: web.Request, response: web.StreamResponse, uid: str | None) -> None:
    if uid is not None:
        set_uid_cookie(
            response,
            uid,
            secure=is_secure_context(request),
            domain=request.app[SETTINGS].cookie_domain,
        )


async def pixel(request: web.Request) -> web.StreamResponse:
    response = gif()
    metrics = request.app[METRICS]
    if opted_out(request) or is_bot(request):
        metrics.tracking_rejects.labels("bot" if is_bot(request) else "opted_out").inc()
        return response
    if not consented(request, request.query.get("gdpr"), request.query.get("gdpr_consent")):
        metrics.tracking_rejects.labels("no_consent").inc()
        return response
    event = parse_pixel_query(request.query, request.app[SETTINGS].advertisers)
    if isinstance(event, Reject):
        metrics.tracking_rejects.labels(event.reason).inc()
        return response
    _with_uid(request, response, await _store(request, [event]))
    return response


async def batch(request: web.Request) -> web.StreamResponse:
    metrics = request.app[METRICS]
    if opted_out(request) or is_bot(request):
        metrics.tracking_rejects.labels("bot" if is_bot(request) else "opted_out").inc()
        return web.Response(status=204)
    body = await read_body(request, MAX_BATCH_BYTES)
    parsed = parse_batch(body, request.app[SETTINGS].advertisers)
    if isinstance(parsed, Reject):
        metrics.tracking_rejects.labels(parsed.reason).inc()
        status = 413 if parsed.reason == "body_too_large" else 400
        return json_error(status, f"bad event batch: {parsed.reason}")
    if not consented(request, parsed.gdpr, parsed.gdpr_consent):
        metrics.tracking_rejects.labels("no_consent").inc()
        return web.Response(status=204)
    events = [e for e in parsed.events if isinstance(e, ShopperEvent)]
    rejects = [r.reason for r in parsed.events if isinstance(r, Reject)]
    for reason in rejects:
        metrics.tracking_rejects.labels(reason).inc()
    if not events:
        return json_error(400, "no valid event in batch", rejects=rejects)
    response = web.Response(status=204)
    _with_uid(request, response, await _store(request, events))
    return response


async def tag_script(request: web.Request) -> web.StreamResponse:
    return javascript(TAG_JS, cache_seconds=TAG_CACHE_SECONDS)
