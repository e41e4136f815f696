"""Admin API: `/api/v1/advertisers/{adv}/products` — an advertiser's catalog, replaced by a
feed and listed as this process serves it."""

from __future__ import annotations

import logging

from aiohttp import web

from adserver.feeds.importer import import_feed
from adserver.feeds.validation import FeedError, FeedTooLong, FeedValidator
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.admin.changes import refresh_quietly, store_unavailable
from adserver.http.app_keys import MARKET, METRICS, SETTINGS, STORE
from adserver.http.bodies import BodyTooLarge, body_pieces
from adserver.http.responses import json_error, json_response
from adserver.store import RedisError

log = logging.getLogger(__name__)
FEED_PREVIEW = 1000


async def put_products(request: web.Request) -> web.StreamResponse:
    """Replace the advertiser's catalog with a feed (NDJSON, JSON array or CSV), read and
    validated as it arrives (see adserver.feeds.importer)."""
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
