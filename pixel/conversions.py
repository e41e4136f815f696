"""`POST /api/v1/advertisers/{adv}/conversions`: the shop's server confirms an order (the
postback), with the advertiser's token; recorded like the tag's purchase."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

import orjson
from aiohttp import web

from adserver.core.shopper import ShopperEvent
from adserver.delivery.click_ids import ClickId, open_click_id
from adserver.delivery.tokens import InvalidToken
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.app_keys import METRICS, SETTINGS, SIGNER, STORE
from adserver.http.bodies import read_body
from adserver.http.responses import json_error, json_response
from adserver.identity.uid_cookie import UID_PATTERN
from adserver.store import Conversion, RedisError
from pixel.events import Reject, parse_tag_event


async def post_conversion(request: web.Request) -> web.StreamResponse:
    """A shop confirms an order server-side: `{"uid" and/or "click_id", "order", "revenue",
    "currency", "items": [...]}`. Recorded like the tag's purchase (deduplicated by order id
    with it), and attributed to the shopper's last click or impression, or, with a click id
    (the `kclid` of the landing URL), to that click."""
    advertiser = authorize_advertiser(request)
    try:
        document = orjson.loads(await read_body(request, 64 * 1024))
    except orjson.JSONDecodeError:
        return json_error(400, "body must be a JSON object")
    if not isinstance(document, dict):
        return json_error(400, "body must be a JSON object")
    uid, click_id = document.get("uid"), document.get("click_id")
    if click_id is None and uid is None:
        return json_error(
            400,
            "uid or click_id is required: the shopper's Kaeru uid or the "
            "click id (kclid) of the landing URL",
        )
    if uid is not None and (not isinstance(uid, str) or not UID_PATTERN.match(uid)):
        return json_error(400, "uid must be the shopper's Kaeru uid cookie value")
    click = None if click_id is None else _open_click(request, advertiser, click_id)
    if isinstance(click, web.Response):
        return click
    event = parse_tag_event(
        {**document, "advertiser": advertiser, "event": "purchase"}, [advertiser]
    )
    if isinstance(event, Reject):
        request.app[METRICS].tracking_rejects.labels(event.reason).inc()
        return json_error(400, f"invalid conversion: {event.reason}")
    # The shop's own server says so: its revenue stands (see pixel.events.at_catalog_value).
    event = replace(event, server_reported=True)
    if click is None:
        return await _record(request, str(uid), event)
    return await _record_click(request, uid, click, event)


def _open_click(request: web.Request, advertiser: str, click_id: object) -> ClickId | web.Response:
    """The click a posted click id names, or the 400 refusing it (and counted)."""
    app = request.app
    window = app[SETTINGS].click_window_days * 86400
    click = (
        open_click_id(app[SIGNER], click_id, window)
        if isinstance(click_id, str)
        else InvalidToken("malformed")
    )
    if not isinstance(click, InvalidToken) and click.placement.advertiser != advertiser:
        click = InvalidToken("other_advertiser")
    if isinstance(click, InvalidToken):
        app[METRICS].click_ids.labels(f"postback_{click.reason}").inc()
        return json_error(
            400,
            f"invalid click_id ({click.reason}): not a click id of {advertiser} "
            "within the click window",
        )
    app[METRICS].click_ids.labels("postback").inc()
    return click


async def _record_click(
    request: web.Request, posted_uid: str | None, click: ClickId, event: ShopperEvent
) -> web.StreamResponse:
    """An order attributed to the click its click id names, counted once per order id (and
    shopper, when one is known: then the purchase goes into their profile too, so its items
    are not retargeted). The click id's own uid is the shopper's only while Kaeru still knows
    them (the click's touch, their events): one who opted out or was forgotten since the
    click gets nothing back."""
    store, now = request.app[STORE], time.time()
    uid = posted_uid or click.uid or None
    try:
        if uid is not None and posted_uid is None:
            uid = uid if await store.knows(uid, click.placement.advertiser) else None
    except (RedisError, OSError):
        request.app[METRICS].store_errors.labels("conversion").inc()
        return json_error(503, "storage unavailable, retry later")
    conversion = Conversion(
        *(click.placement.advertiser, event.order or "", event.revenue or Decimal(0)),
        *("click", click.placement.key, now),
        server_reported=True,
        uid=uid or "",
        click_ms=str(round(click.at * 1000)),  # as the landing page's touch keeps it
    )
    try:
        (counted,) = await store.ledger.record_conversions([conversion])
        if uid is not None:  # its own attribution finds the order counted: not counted again
            await store.record_events(uid, [event], now)
    except (RedisError, OSError):
        request.app[METRICS].store_errors.labels("conversion").inc()
        return json_error(503, "storage unavailable, retry later")
    return json_response(
        {
            "order": event.order,
            "attributed": counted,
            "touch": "click" if counted else None,
            "campaign": click.placement.campaign if counted else None,
        }
    )


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
