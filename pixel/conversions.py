"""`POST /api/v1/advertisers/{adv}/conversions`: the shop's server confirms an order (the
postback), with the advertiser's token; recorded like the tag's purchase."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
from aiohttp import web

from adserver.core.shopper import ShopperEvent
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.app_keys import METRICS, STORE
from adserver.http.bodies import read_body
from adserver.http.responses import json_error, json_response
from adserver.identity.uid_cookie import UID_PATTERN
from adserver.store import RedisError
from pixel.events import Reject, parse_tag_event


async def post_conversion(request: web.Request) -> web.StreamResponse:
    """A shop confirms an order server-side: `{"uid", "order", "revenue", "currency",
    "items": [...]}`. Recorded like the tag's purchase (deduplicated by order id with it),
    and attributed to the shopper's last click or impression."""
    advertiser = authorize_advertiser(request)
    try:
        document = orjson.loads(await read_body(request, 64 * 1024))
    except orjson.JSONDecodeError:
        return json_error(400, "body must be a JSON object")
    if not isinstance(document, dict):
        return json_error(400, "body must be a JSON object")
    uid = document.get("uid")
    if not isinstance(uid, str) or not UID_PATTERN.match(uid):
        return json_error(400, "uid must be the shopper's Kaeru uid cookie value")
    event = parse_tag_event(
        {**document, "advertiser": advertiser, "event": "purchase"}, [advertiser]
    )
    if isinstance(event, Reject):
        request.app[METRICS].tracking_rejects.labels(event.reason).inc()
        return json_error(400, f"invalid conversion: {event.reason}")
    # The shop's own server says so: its revenue stands (see pixel.events.at_catalog_value).
    return await _record(request, uid, replace(event, server_reported=True))


async def _record(request: web.Request, uid: str, event: ShopperEvent) -> web.StreamResponse:
    try:
        conversions = await request.app[STORE].record_events(uid, [event], time.time())
    except (RedisError, OSError):
        request.app[METRICS].store_errors.labels("conversion").inc()
        return json_error(503, "storage unavailable, retry later")
    attributed = conversions[0] if conversions else None
    return json_response(
        {
            "order": event.order,
            "attributed": attributed is not None,
            "touch": attributed.touch if attributed else None,
            "campaign": attributed.campaign if attributed else None,
        }
    )
