"""Admin API under `/api/v1/`: per-advertiser bearer tokens, one operator token.

An advertiser's token reaches only that advertiser's resources; the operator's reaches all.
"""

from __future__ import annotations

import logging

from aiohttp import web

from adserver.delivery.market_cache import MarketCache
from adserver.feeds.importer import import_feed
from adserver.feeds.validation import FeedError, FeedTooLong, FeedValidator
from adserver.http.app_keys import MARKET, METRICS, SETTINGS, STORE, forget_buffered
from adserver.http.bodies import BodyTooLarge, body_pieces
from adserver.http.responses import json_error, json_response
from adserver.identity.gates import UID_PATTERN
from adserver.store import RedisError

log = logging.getLogger(__name__)
FEED_PREVIEW = 1000


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authorize_advertiser(request: web.Request) -> str:
    """The advertiser named in the path, if the caller's token may act for it; else raises
    401 (no or unknown token), 403 (another advertiser's token) or 404 (no such advertiser)."""
    settings = request.app[SETTINGS]
    advertiser = request.match_info["advertiser"]
    token = bearer_token(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="kaeru"'}
    if token is None:
        raise web.HTTPUnauthorized(text="missing bearer token", headers=challenge)
    owner = settings.token_owner(token)
    if settings.is_operator(token):
        if advertiser not in settings.advertisers:
            raise web.HTTPNotFound(text=f"unknown advertiser {advertiser[:64]!r}")
        return advertiser
    if owner is None:
        raise web.HTTPUnauthorized(text="unknown token", headers=challenge)
    if owner != advertiser:
        raise web.HTTPForbidden(text="this token belongs to another advertiser")
    return advertiser


def authorize_operator(request: web.Request) -> None:
    token = bearer_token(request)
    if token is None:
        raise web.HTTPUnauthorized(
            text="missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="kaeru"'}
        )
    if not request.app[SETTINGS].is_operator(token):
        raise web.HTTPForbidden(text="this needs the operator token")


async def forget_user(request: web.Request) -> web.StreamResponse:
    """Erase everything about one uid (idempotent): its profile, counters and learning state."""
    authorize_operator(request)
    uid = request.match_info["uid"]
    if not UID_PATTERN.match(uid):
        return json_error(400, "not a Kaeru uid")
    await forget_buffered(request.app, uid)
    deleted = await request.app[STORE].forget(uid, request.app[SETTINGS].advertisers)
    return json_response({"uid": uid, "deleted_keys": deleted})


async def put_products(request: web.Request) -> web.StreamResponse:
    """Replace the advertiser's catalog with a feed (NDJSON, JSON array or CSV), read and
    validated as it arrives (see feed_import)."""
    advertiser = authorize_advertiser(request)
    app, settings = request.app, request.app[SETTINGS]
    domains = settings.advertiser_domains.get(advertiser, ())
    validator = FeedValidator(request.content_type, domains, settings.max_products, FEED_PREVIEW)
    limit = settings.feed_max_bytes
    try:
        pieces = body_pieces(request, limit)
        version = await import_feed(pieces, validator, app[STORE].catalog_upload(advertiser))
    except BodyTooLarge:
        app[METRICS].bad_requests.labels("products", "too_large").inc()
        return json_error(413, f"a feed is at most {limit // 2**20} MB (KAERU_FEED_MAX_MB)")
    except FeedTooLong as exc:
        app[METRICS].bad_requests.labels("products", "too_many_rows").inc()
        return json_error(413, f"a feed has at most {exc.max_rows} rows (KAERU_MAX_PRODUCTS)")
    except FeedError as exc:
        app[METRICS].bad_requests.labels("products", "unreadable").inc()
        return json_error(400, f"unreadable feed: {exc}")
    except (RedisError, OSError, TimeoutError) as exc:
        return store_unavailable(request, exc)
    metrics = app[METRICS]
    metrics.feed_rows.labels("accepted").inc(validator.tally.accepted)
    metrics.feed_rows.labels("rejected").inc(validator.tally.rejected)
    summary = validator.tally.summary(FEED_PREVIEW)
    if version is None:
        return json_response({**summary, "error": "no valid product; catalog unchanged"}, 422)
    await refresh_quietly(request.app[MARKET])
    return json_response({**summary, "version": version})


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


async def get_products(request: web.Request) -> web.StreamResponse:
    """The catalog as this server process serves it now."""
    advertiser = authorize_advertiser(request)
    catalog = request.app[MARKET].catalog(advertiser)
    listed = [
        {
            "id": p.id,
            "title": p.title,
            "price": str(p.price),
            "sale_price": None if p.sale_price is None else str(p.sale_price),
            "currency": p.currency,
            "availability": p.availability,
            "link": p.link,
        }
        for p in sorted(catalog.values(), key=lambda p: p.id)
    ]
    return json_response({"advertiser": advertiser, "count": len(listed), "products": listed})
