"""Partner-side endpoints: `/ad` (iframe HTML), `/ad.js` (script), `/ad.json`, and the
signed `/c/TOKEN` click redirect and `/i/TOKEN` rendered beacon. Each handler parses (pure),
acts through the decision core and the store, and answers."""

from __future__ import annotations

import logging
import random
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from adserver.ad_request import BadAdRequest, parse_ad_request
from adserver.context import CATALOG, METRICS, NEIGHBOURS, RENDERER, SETTINGS, SIGNER, STORE
from adserver.decision import Slot, pick_products
from adserver.delivery import CLICK_PURPOSE, RENDER_PURPOSE, ServedAd, build_ad
from adserver.responses import creative_html, gif, javascript, json_error, json_response
from adserver.shopper import Shopper
from adserver.signing import InvalidToken
from adserver.store import RedisError
from pixel.identity import is_secure_context, opted_out, read_uid, set_uid_cookie

log = logging.getLogger(__name__)

AD_JS = (
    "(function(){{var s=document.currentScript,f=document.createElement('iframe');"
    "f.width='{w}';f.height='{h}';f.title='Advertisement';f.setAttribute('scrolling','no');"
    "f.style.border='0';f.setAttribute('sandbox','allow-popups "
    "allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation');"
    "f.srcdoc={html};if(s&&s.parentNode){{s.parentNode.insertBefore(f,s.nextSibling)}}"
    "else{{document.body.appendChild(f)}}}})();"
)


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _bad_request(request: web.Request, bad: BadAdRequest) -> web.Response:
    request.app[METRICS].bad_requests.labels("ad", bad.reason).inc()
    return json_error(400, bad.message, **bad.details)


async def _serve(request: web.Request, slot: Slot) -> ServedAd | None:
    """Decide and count the impression; a Redis failure degrades to a non-personalised ad."""
    app = request.app
    store, metrics = app[STORE], app[METRICS]
    uid = None if opted_out(request) else read_uid(request.cookies)
    try:
        shopper = await store.load_shopper(uid)
    except (RedisError, OSError) as exc:
        metrics.store_errors.labels("load_shopper").inc()
        log.warning("profile read failed, serving non-personalised: %s", exc)
        shopper = Shopper(None)
    try:
        suggestions = await app[NEIGHBOURS].suggest(shopper)
    except (RedisError, OSError):
        metrics.store_errors.labels("neighbours").inc()
        suggestions = {}
    fallback = list(app[SETTINGS].advertisers)
    random.shuffle(fallback)
    decision = pick_products(shopper, app[CATALOG], slot, fallback, suggestions)
    if decision is None:
        metrics.no_fill.inc()
        return None
    served = build_ad(decision, slot, base_url(request), app[SIGNER], app[RENDERER])
    metrics.ads.labels(decision.strategy).inc()
    try:
        await store.count("imp", decision.advertiser, slot.publisher)
    except (RedisError, OSError):
        metrics.store_errors.labels("count_impression").inc()
    return served


def _refresh_uid(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    uid = read_uid(request.cookies)
    if uid is not None and not opted_out(request):
        set_uid_cookie(
            response,
            uid,
            secure=is_secure_context(request),
            domain=request.app[SETTINGS].cookie_domain,
        )
    return response


async def ad_html(request: web.Request) -> web.StreamResponse:
    slot = parse_ad_request(request.query, request.app[RENDERER].formats)
    if isinstance(slot, BadAdRequest):
        return _bad_request(request, slot)
    served = await _serve(request, slot)
    html = served.html if served else request.app[RENDERER].no_fill(slot.size)
    return _refresh_uid(request, creative_html(html))


async def ad_script(request: web.Request) -> web.StreamResponse:
    slot = parse_ad_request(request.query, request.app[RENDERER].formats)
    if isinstance(slot, BadAdRequest):
        return _bad_request(request, slot)
    served = await _serve(request, slot)
    if served is None:
        return javascript("/* kaeru: no fill */")
    creative = request.app[RENDERER].formats[slot.size]
    html_literal = orjson.dumps(served.html).decode().replace("<", "\\u003c")
    code = AD_JS.format(w=creative.width, h=creative.height, html=html_literal)
    return _refresh_uid(request, javascript(code))


async def ad_json(request: web.Request) -> web.StreamResponse:
    slot = parse_ad_request(request.query, request.app[RENDERER].formats)
    if isinstance(slot, BadAdRequest):
        return _bad_request(request, slot)
    served = await _serve(request, slot)
    if served is None:
        return web.Response(status=204, headers={"Cache-Control": "no-store"})
    return _refresh_uid(request, json_response(served.as_json()))


async def click(request: web.Request) -> web.StreamResponse:
    """`/c/TOKEN`: verify the signature and age, count the click, redirect to the product."""
    app = request.app
    settings, metrics = app[SETTINGS], app[METRICS]
    fields = app[SIGNER].verify(
        CLICK_PURPOSE, request.match_info["token"], settings.click_ttl_days * 86400
    )
    if isinstance(fields, InvalidToken):
        metrics.click_rejects.labels(fields.reason).inc()
        return json_error(400, "invalid or expired click link")
    advertiser, sku, publisher, landing, _strategy = (str(f) for f in fields)
    if urlsplit(landing).scheme not in ("http", "https"):
        metrics.click_rejects.labels("bad_landing").inc()
        return json_error(400, "invalid or expired click link")
    uid = None if opted_out(request) else read_uid(request.cookies)
    try:
        await app[STORE].record_click(uid, advertiser, sku, publisher)
    except (RedisError, OSError):
        metrics.store_errors.labels("record_click").inc()
    metrics.clicks.inc()
    raise web.HTTPFound(landing, headers={"Cache-Control": "no-store"})


async def rendered(request: web.Request) -> web.StreamResponse:
    """`/i/TOKEN`: the creative was actually displayed. Always a GIF."""
    app = request.app
    fields = app[SIGNER].verify(
        RENDER_PURPOSE, request.match_info["token"], app[SETTINGS].click_ttl_days * 86400
    )
    if isinstance(fields, InvalidToken):
        app[METRICS].tracking_rejects.labels(f"render_{fields.reason}").inc()
        return gif()
    advertiser, publisher = str(fields[0]), str(fields[1])
    try:
        await app[STORE].count("render", advertiser, publisher)
    except (RedisError, OSError):
        app[METRICS].store_errors.labels("count_render").inc()
    return gif()
