"""`GET /recs.json?a=ADV&placement=P[&item=SKU][&n=N]`: recommendations for the shop's own pages,
and `GET /recs.js`, the widget that renders them (`adserver/recs/static/recs.js`, cacheable).

Thin: the query is parsed and the products chosen by `adserver.recs.placements` (pure); this
handler asks the gates, reads the profile (one round trip, the ad decision's script) and the
neighbour lists from the ad decision's in-process cache (`NeighbourCache`: a list not cached yet
costs one round trip more), and signs the click links (`onsite` channel)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from adserver.config.settings import ONSITE_PUBLISHER
from adserver.core.product import prices_in
from adserver.core.shopper import Shopper
from adserver.core.suggestions import Suggestions
from adserver.delivery.served_ad import (
    RECS_VIEW_PURPOSE,
    UNCOUNTED_IMPRESSION,
    onsite_click_url,
    onsite_placement,
    recs_view_url,
    recs_views_from_token,
)
from adserver.delivery.tokens import InvalidToken
from adserver.http.app_keys import (
    IDENTITY,
    IMPRESSION_CAPS,
    MARKET,
    METRICS,
    NEIGHBOURS,
    SETTINGS,
    SHOWN_WRITER,
    SIGNER,
    STORE,
    TRENDING,
)
from adserver.http.edge.middleware import public_base_url
from adserver.http.responses import gif, javascript, json_error, json_response
from adserver.identity.gates import Gates
from adserver.identity.identifiers import valid_fpid
from adserver.recs.placements import (
    BadRecsQuery,
    ListKey,
    RecsQuery,
    may_personalise_for,
    parse_recs_query,
    recommend,
    wanted_lists,
)
from adserver.runtime.waiting import within
from adserver.store import Placement, RedisError
from adserver.store.learning import NeighbourList
from adserver.store.ledger import RENDER_BEACON_SECONDS, Shown, new_impression_id

log = logging.getLogger(__name__)
ROUTE = "recs"

# The widget: the same bytes for every shop (what it shows comes from `/recs.json`), cached
# like the shop tag.
RECS_JS = resources.files("adserver.recs").joinpath("static/recs.js").read_text(encoding="utf-8")
RECS_JS_CACHE_SECONDS = 3600


async def recs_script(request: web.Request) -> web.StreamResponse:
    return javascript(RECS_JS, cache_seconds=RECS_JS_CACHE_SECONDS)


def _cors(request: web.Request, response: web.StreamResponse, personal: bool) -> None:
    """Any page may read a non-personalised answer; a personalised one only the page it was
    personalised for (with the uid cookie: credentials)."""
    origin = request.headers.get("Origin")
    if origin and personal:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
    elif origin:
        response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers.add("Vary", "Origin")


async def recs_json(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings, metrics = app[SETTINGS], app[METRICS]
    query = parse_recs_query(request.query, settings.advertisers)
    if isinstance(query, BadRecsQuery):
        metrics.bad_requests.labels(ROUTE, query.reason).inc()
        response = json_error(400, query.message, reason=query.reason)
        _cors(request, response, personal=False)
        return response
    fpid = request.query.get("fpid") or None
    if fpid is not None and valid_fpid(fpid) is None:
        metrics.bad_requests.labels(ROUTE, "bad_fpid").inc()
        response = json_error(400, "fpid must be the shop tag's first-party id", reason="bad_fpid")
        _cors(request, response, personal=False)
        return response
    gates = Gates.of_query(request, settings)
    domains = settings.advertiser_domains.get(query.advertiser, ())
    personal = may_personalise_for(request.headers.get("Origin"), domains)
    uid = await _shopper_uid(request, gates, query.advertiser, fpid) if personal else None
    if gates.bot:
        metrics.bot_requests.labels(ROUTE).inc()
    chosen = await recommend_products(request, query, uid, onsite_placement)
    metrics.recs.labels(query.placement, "filled" if chosen.products else "empty").inc()
    answer: dict[str, Any] = {
        "advertiser": query.advertiser,
        "placement": query.placement,
        "personalised": chosen.personalised,
        "products": chosen.products,
    }
    if chosen.products:  # the widget fetches it once the list is in view: its impressions
        counted = _counts_views(request, uid)
        impression = chosen.impression if counted else UNCOUNTED_IMPRESSION
        base = public_base_url(request)
        answer["impression_url"] = recs_view_url(base, app[SIGNER], chosen.placements, impression)
    response = json_response(answer)
    _cors(request, response, personal=uid is not None)
    return response


def _counts_views(request: web.Request, uid: str | None) -> bool:
    """Whether this answer's impressions may count once seen: the ad impressions' per-client
    cap (`adserver.delivery.impression_caps`) on the `onsite` channel, so a loop fetching
    answers and firing their beacons stops counting."""
    caps, now = request.app[IMPRESSION_CAPS], time.time()
    address, user_agent = request.remote or "", request.headers.get("User-Agent", "")
    if uid is not None:
        return caps.count_browser(uid, now, ONSITE_PUBLISHER, address)
    return caps.count_anonymous(ONSITE_PUBLISHER, address, user_agent, now)


async def recs_viewed(request: web.Request) -> web.StreamResponse:
    """`/recs/i/TOKEN`: the widget's list was seen; its products count as impressions, once
    per answer (the token is sealed, see `recs_view_url`). Always a GIF."""
    app = request.app
    metrics = app[METRICS]
    token = request.match_info["token"]
    fields = app[SIGNER].verify(RECS_VIEW_PURPOSE, token, RENDER_BEACON_SECONDS)
    parsed = None if isinstance(fields, InvalidToken) else recs_views_from_token(fields)
    if parsed is None:
        reason = fields.reason if isinstance(fields, InvalidToken) else "malformed"
        metrics.tracking_rejects.labels(f"recs_view_{reason}").inc()
        return gif()
    if Gates(request, app[SETTINGS]).bot:
        metrics.bot_requests.labels("recs_view").inc()
        return gif()
    impression, views = parsed
    if impression == UNCOUNTED_IMPRESSION:  # past the client's cap when answered
        metrics.renders_uncounted.inc()
        return gif()
    now = time.time()
    app[SHOWN_WRITER].write_later(
        [Shown(None, p, (), now, rendered=True, impression=impression, viewed=n) for p, n in views]
    )
    return gif()


PlacementOf = Callable[[str, str, str], Placement]  # (advertiser, placement, reason)


@dataclass(frozen=True, slots=True)
class Recommended:
    """What `recommend_products` chose: the products as answered, the placement of each (for
    its impression), the answer's impression id (in its click links) and whether it was
    personalised."""

    products: list[dict[str, Any]]
    placements: list[Placement]
    impression: str
    personalised: bool


async def recommend_products(
    request: web.Request, query: RecsQuery, uid: str | None, placement_of: PlacementOf
) -> Recommended:
    """The products of a placement for `uid` (None: a new or anonymous shopper), their click
    links signed with the channel's placement (`onsite_placement` for the shop's pages,
    `email_placement` for its e-mails). Shared by `/recs.json` and the e-mail
    recommendations of the admin API: same engine, same exclusions, same caches."""
    app = request.app
    shopper, lists = await _read(request, query, uid)
    history = next((h for h in shopper.histories if h.advertiser == query.advertiser), None)
    # the rankings of this shop only (the ad decision's cover every shop the shopper visited)
    here = Shopper(shopper.uid, (history,)) if history else None
    suggestions = await _suggestions(request, here, query.advertiser) if here else None
    market = app[MARKET]
    trending = await _trending(request, query.advertiser) if query.placement == "trending" else []
    chosen = recommend(
        query,
        history,
        suggestions,
        lists,
        market.catalog(query.advertiser),
        market.popular(query.advertiser),
        lambda sku: market.upsell(query.advertiser, sku),
        trending,
    )
    base, signer = public_base_url(request), app[SIGNER]
    impression = new_impression_id(time.time())
    products: list[dict[str, Any]] = []
    placements: list[Placement] = []
    locale = app[SETTINGS].advertiser_locales.get(query.advertiser)
    for pick in chosen:
        product = pick.product
        placement = placement_of(query.advertiser, query.placement, pick.reason)
        placements.append(placement)
        price_text, regular_price_text = prices_in(product, locale)
        products.append(
            {
                "id": product.id,
                "title": product.title,
                "price": str(product.selling_price),
                "currency": product.currency,
                "price_text": price_text,
                "regular_price_text": regular_price_text,
                "image_url": product.image_link,
                "click_url": onsite_click_url(
                    base, signer, placement, product.id, product.link, impression
                ),
                "reason": pick.reason,
            }
        )
    return Recommended(products, placements, impression, history is not None)


async def _read(
    request: web.Request, query: RecsQuery, uid: str | None
) -> tuple[Shopper, dict[ListKey, NeighbourList]]:
    """The profile and the neighbour lists the placement reads, within the Redis deadline; a
    failure degrades to a non-personalised answer (popular products) rather than an error."""
    app = request.app
    deadline = app[SETTINGS].redis_deadline_ms / 1000
    metrics = app[METRICS]
    item_lists = wanted_lists(query, None)  # what the item alone needs: read alongside
    try:
        shopper, lists = await within(_both(request, uid, item_lists), deadline)
    except (RedisError, OSError, TimeoutError) as exc:
        metrics.store_errors.labels("recs").inc()
        log.warning("recs read failed, answering non-personalised: %r", exc)
        return Shopper(None), {}
    history = next((h for h in shopper.histories if h.advertiser == query.advertiser), None)
    more = [key for key in wanted_lists(query, history) if key not in lists]
    if more:  # the cart's lists: cached, or one round trip more
        try:
            lists.update(await within(app[NEIGHBOURS].lists(more), deadline))
        except (RedisError, OSError, TimeoutError):
            metrics.store_errors.labels("neighbours").inc()
    return shopper, lists


async def _shopper_uid(
    request: web.Request, gates: Gates, advertiser: str, fpid: str | None
) -> str | None:
    """The uid cookie the gates allow, else (same gates) the uid the shop tag's first-party
    id is linked to: one round trip more, within the Redis deadline."""
    uid = gates.personal_uid()
    if uid is not None or fpid is None or gates.bot or gates.opted_out or not gates.consented:
        return uid
    app = request.app
    try:
        resolving = app[IDENTITY].first_party_uid(advertiser, fpid)
        return await within(resolving, app[SETTINGS].redis_deadline_ms / 1000)
    except (RedisError, OSError, TimeoutError):
        app[METRICS].store_errors.labels("identity").inc()
        return None


async def _trending(request: web.Request, advertiser: str) -> list[str]:
    """The shop's trending ranking: cached in process (a minute), else one round trip."""
    cache = request.app[TRENDING]
    found = cache.cached(advertiser)
    if found is not None:
        return found
    try:
        return await within(cache.fetch(advertiser), request.app[SETTINGS].redis_deadline_ms / 1000)
    except (RedisError, OSError, TimeoutError):
        request.app[METRICS].store_errors.labels("trending").inc()
        return []


async def _both(
    request: web.Request, uid: str | None, item_lists: list[ListKey]
) -> tuple[Shopper, dict[ListKey, NeighbourList]]:
    """The profile script and the item's lists (most often cached: no round trip) at once."""
    app = request.app
    shopper, lists = await asyncio.gather(
        app[STORE].load_shopper(uid), app[NEIGHBOURS].lists(item_lists)
    )
    return shopper, lists


async def _suggestions(
    request: web.Request, shopper: Shopper, advertiser: str
) -> Suggestions | None:
    """The shopper's rankings at this shop, as the ad decision gets them."""
    neighbours = request.app[NEIGHBOURS]
    found = neighbours.cached_suggestions(shopper)
    if found is None:
        try:
            deadline = request.app[SETTINGS].redis_deadline_ms / 1000
            found = await within(neighbours.suggest(shopper), deadline)
        except (RedisError, OSError, TimeoutError):
            request.app[METRICS].store_errors.labels("neighbours").inc()
            return None
    return found.get(advertiser)
