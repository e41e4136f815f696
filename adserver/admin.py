"""Admin API under `/api/v1/`: per-advertiser bearer tokens, one operator token.

An advertiser's token reaches only that advertiser's resources; the operator's reaches all.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from adserver.bodies import read_body
from adserver.catalog import FeedError, parse_feed
from adserver.context import MARKET, METRICS, SETTINGS, STORE, forget_buffered
from adserver.responses import json_error, json_response
from pixel.identity import UID_PATTERN

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
    """Replace the advertiser's catalog with a feed (NDJSON, JSON array or CSV)."""
    advertiser = authorize_advertiser(request)
    app = request.app
    limit = request.app[SETTINGS].feed_max_bytes
    body = await read_body(request, limit)
    if len(body) > limit:
        return json_error(413, f"a feed is at most {limit // 2**20} MB (KAERU_FEED_MAX_MB)")
    try:
        domains = request.app[SETTINGS].advertiser_domains.get(advertiser, ())
        result = await asyncio.to_thread(parse_feed, body, request.content_type, domains)
    except FeedError as exc:
        return json_error(400, f"unreadable feed: {exc}")
    metrics = app[METRICS]
    metrics.feed_rows.labels("accepted").inc(len(result.accepted))
    metrics.feed_rows.labels("rejected").inc(len(result.rejected))
    summary = result.summary(FEED_PREVIEW)
    if not result.accepted:
        return json_response({**summary, "error": "no valid product; catalog unchanged"}, 422)
    version = await app[STORE].replace_catalog(advertiser, result.accepted)
    await app[MARKET].refresh()
    return json_response({**summary, "version": version})


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
