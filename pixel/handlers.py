"""Shop-side endpoints: `/px` (the pixel), `/e` (tag batches) and `/tag.js`.

The pixel answers its GIF whatever happens, so a shop page never breaks; bad input is counted
by reason and stored nowhere.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources

from aiohttp import web

from adserver.buffering.buffered_writer import RETRY_AFTER_SECONDS, Outcome
from adserver.core.shopper import ShopperEvent
from adserver.delivery.click_ids import open_click_id
from adserver.delivery.impression_caps import ADDRESS_FACTOR
from adserver.delivery.tokens import InvalidToken
from adserver.http.app_keys import (
    CLICK_WRITER,
    EVENT_WRITER,
    FEED_GRACE,
    IDENTITY,
    IMPRESSION_CAPS,
    MARKET,
    METRICS,
    SETTINGS,
    SIGNER,
)
from adserver.http.bodies import read_body
from adserver.http.responses import gif, javascript, json_error, unavailable
from adserver.identity.email_signatures import vouched
from adserver.identity.gates import Gates
from adserver.identity.identifiers import Identify
from adserver.identity.links import ShopUid
from adserver.identity.uid_cookie import is_secure_context, new_uid, set_uid_cookie
from adserver.runtime.waiting import within
from adserver.store import RedisError
from adserver.store.ledger import Click
from pixel.events import (
    MAX_BATCH_BYTES,
    Reject,
    at_catalog_value,
    parse_batch,
    parse_pixel_query,
)
from pixel.provenance import from_own_pages
from pixel.screening import screen

log = logging.getLogger(__name__)

TAG_JS = resources.files("pixel").joinpath("static/tag.js").read_text(encoding="utf-8")
TAG_CACHE_SECONDS = 3600
# No valid pixel comes near this (aiohttp's former request-line limit); longer ones get the GIF
# and are stored nowhere (the line limit itself is adserver.http.edge.MAX_REQUEST_LINE).
MAX_PIXEL_TARGET = 8190
# A batch's identity links wait longer than its events (which a buffer keeps when Redis is
# slow): a uid decided without its links would split the shopper's history. No page waits on
# the answer (the tag sends with keepalive).
IDENTITY_DEADLINE_FACTOR = 10


async def _store(
    request: web.Request,
    gates: Gates,
    events: Sequence[ShopperEvent],
    known_uid: str | None = None,
) -> tuple[str | None, bool]:
    """Record one shopper's events (under `known_uid`, else the uid cookie, else a new uid);
    returns the uid to (re)issue and whether the events were accepted (False: the buffer is
    full, they were shed and counted, nothing is stored)."""
    app = request.app
    uid = known_uid or gates.uid or new_uid()
    now = time.time()
    if any(e.kind == "purchase" for e in events):  # the others pass both unchanged
        events = [at_catalog_value(e, app[MARKET].catalog(e.advertiser)) for e in events]
        events = [_attributable(request, e, now) for e in events]
    events, waiting = _sold_only(app, uid, events, now)
    if not events:
        return (uid if waiting else None), True
    outcome = await app[EVENT_WRITER].write([(uid, event, now) for event in events])
    metrics = app[METRICS]
    if outcome is Outcome.SHED:
        endpoint = "px" if request.method == "GET" else "e"
        metrics.events_shed.labels(endpoint).inc(len(events))
        return uid, False
    if outcome is Outcome.KEPT:
        metrics.events_buffered.inc(len(events))  # replayed when Redis answers again
        return uid, True
    for event in events:
        metrics.stored(event.kind)
    return uid, True


def _attributable(request: web.Request, event: ShopperEvent, now: float) -> ShopperEvent:
    """A browser-reported purchase is attributed at most ten times the daily cap per shopper
    an hour per client address and shop: uids cost nothing to make up, addresses do. Past it
    the purchase is recorded, not attributed (`kaeru_browser_conversions_over_cap_total`)."""
    if event.kind != "purchase":
        return event
    app = request.app
    cap = app[SETTINGS].browser_conversions_per_day * ADDRESS_FACTOR
    if app[IMPRESSION_CAPS].count_purchase(event.advertiser, request.remote or "", cap, now):
        return event
    app[METRICS].browser_conversions_over_cap.inc()
    return replace(event, attributable=False)


def _sold_only(
    app: web.Application, uid: str, events: Sequence[ShopperEvent], now: float
) -> tuple[list[ShopperEvent], bool]:
    """The events with only the products their shop sells (see pixel.screening); views and
    carts of products not fed yet wait for a feed (adserver.feeds.grace). Also: whether any
    wait."""
    screened = screen(events, app[MARKET].known_catalog)
    if not screened.waiting and not screened.dropped:
        return screened.kept, False  # the usual case: every item is sold
    unknown = app[METRICS].unknown_items
    waiting = [(uid, event, now) for event in screened.waiting]
    unknown.labels("waiting").inc(sum(len(event.items) for event in screened.waiting))
    unknown.labels("dropped").inc(screened.dropped + app[FEED_GRACE].park(waiting))
    return screened.kept, bool(waiting)


def _on_own_pages(request: web.Request, advertiser: str) -> bool:
    """From the advertiser's own pages, as far as can be known (KAERU_ADVERTISER_DOMAINS)."""
    domains = request.app[SETTINGS].advertiser_domains.get(advertiser, ())
    return from_own_pages(request.headers.get("Origin"), request.headers.get("Referer"), domains)


def _with_uid(request: web.Request, response: web.StreamResponse, uid: str | None) -> None:
    if uid is not None:
        settings = request.app[SETTINGS]
        set_uid_cookie(
            response,
            uid,
            secure=is_secure_context(request, settings.public_url),
            domain=settings.cookie_domain,
        )


async def pixel(request: web.Request) -> web.StreamResponse:
    response = gif()
    app = request.app
    metrics, settings = app[METRICS], app[SETTINGS]
    if len(request.raw_path) > MAX_PIXEL_TARGET:
        metrics.tracking_rejects.labels("query_too_long").inc()
        return response
    gates = Gates.of_query(request, settings)
    untracked = gates.untracked()
    if untracked is not None:
        metrics.tracking_rejects.labels(untracked).inc()
        return response
    if not gates.consented:
        metrics.tracking_rejects.labels("no_consent").inc()
        return response
    event = parse_pixel_query(request.query, settings.advertisers)
    if isinstance(event, Reject):
        metrics.tracking_rejects.labels(event.reason).inc()
        return response
    if not _on_own_pages(request, event.advertiser):
        metrics.tracking_rejects.labels("foreign_origin").inc()
        return response
    uid, _ = await _store(request, gates, [event])  # shed or not, the GIF (counted in _store)
    _with_uid(request, response, uid)
    return response


async def batch(request: web.Request) -> web.StreamResponse:
    response = await _batch(request)
    _let_the_tag_read(request, response)
    return response


def _let_the_tag_read(request: web.Request, response: web.StreamResponse) -> None:
    """The tag on a shop's own site sends with fetch(credentials: include) and must read the
    status (a 503 keeps the batch for later) and Retry-After: CORS for the page's origin. The
    answer carries nothing about anybody (a status, an error message)."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    response.headers.add("Vary", "Origin")


async def _batch(request: web.Request) -> web.StreamResponse:
    """Any page may read this answer (CORS, for the tag), so everything that can refuse the
    batch comes before the opt-out: the status never tells a page the browser opted out."""
    metrics = request.app[METRICS]
    body = await read_body(request, MAX_BATCH_BYTES)
    parsed = parse_batch(body, request.app[SETTINGS].advertisers)
    if isinstance(parsed, Reject):
        metrics.tracking_rejects.labels(parsed.reason).inc()
        status = 413 if parsed.reason == "body_too_large" else 400
        return json_error(status, f"bad event batch: {parsed.reason}")
    gates = Gates(request, request.app[SETTINGS], parsed.gdpr, parsed.gdpr_consent)
    if not gates.consented:
        metrics.tracking_rejects.labels("no_consent").inc()
        return web.Response(status=204)
    events = [e for e in parsed.events if isinstance(e, ShopperEvent)]
    identifies = [e for e in parsed.events if isinstance(e, Identify)]
    rejects = [r.reason for r in parsed.events if isinstance(r, Reject)]
    for reason in rejects:
        metrics.tracking_rejects.labels(reason).inc()
    if parsed.bad_fpid:  # ignored: the batch is stored as if it had none
        metrics.tracking_rejects.labels("bad_fpid").inc()
    if not events and not identifies:
        return json_error(400, "no valid event in batch", rejects=rejects)
    own = [e for e in events if _on_own_pages(request, e.advertiser)]
    told = [e for e in identifies if _on_own_pages(request, e.advertiser)]
    foreign = len(events) + len(identifies) - len(own) - len(told)
    if foreign:
        metrics.tracking_rejects.labels("foreign_origin").inc(foreign)
        if not own and not told:
            return json_error(403, "events from a page not on the advertiser's domains")
        events, identifies = own, told
    untracked = gates.untracked()
    if untracked is not None:
        metrics.tracking_rejects.labels(untracked).inc()
        return web.Response(status=204)
    identifies = _vouched(request, identifies)
    identified = await _identified(request, gates, events, identifies, parsed.fpid)
    if identified is None:  # the opt-out could not be checked: shed, the tag keeps the batch
        metrics.events_shed.labels("e").inc(len(events) + len(identifies))
        return unavailable("busy: send the batch again later", RETRY_AFTER_SECONDS)
    found, opted_out = identified
    if opted_out:  # through an identifier, where no cookie could say so
        metrics.tracking_rejects.labels("opted_out").inc()
        return web.Response(status=204)
    known = found.uid if found else None
    # A uid found through the first-party id is never handed out (see ShopUid): whoever
    # sends a shopper's fpid (any script on the shop's page can read it) gets no cookie.
    issue = found is None or found.issue
    if not events:  # identify only: the links are written, the uid cookie refreshed
        # The landing page's first batch may be this one: its click id is sent only once.
        await _landing_click(request, parsed.kclid, known, [e.advertiser for e in identifies])
        response = web.Response(status=204)
        _with_uid(request, response, known if issue else None)
        return response
    uid, accepted = await _store(request, gates, events, known)
    if not accepted:  # the tag keeps the batch and sends it again after Retry-After
        return unavailable("busy: send the batch again later", RETRY_AFTER_SECONDS)
    await _landing_click(request, parsed.kclid, uid, [e.advertiser for e in events])
    response = web.Response(status=204)
    _with_uid(request, response, uid if issue else None)
    return response


def _vouched(request: web.Request, identifies: Sequence[Identify]) -> list[Identify]:
    """The identifies with their e-mails' signatures checked: only an e-mail its shop's
    server signed is kept for the shop's audiences (every identify still links for ads);
    the others are counted in kaeru_email_sigs_refused_total{reason}."""
    tokens, now = request.app[SETTINGS].advertisers, time.time()
    checked = []
    for identify in identifies:
        one, refused = vouched(identify, tokens, now)
        if refused is not None:
            request.app[METRICS].email_sigs_refused.labels(refused).inc()
        checked.append(one)
    return checked


async def _identified(
    request: web.Request,
    gates: Gates,
    events: Sequence[ShopperEvent],
    identifies: Sequence[Identify],
    fpid: str | None,
) -> tuple[ShopUid | None, bool] | None:
    """The uid of a batch that passed every gate, by its identity links (see
    `adserver.identity.links`: with whether the answer may issue it as the uid cookie), with
    the links written, and whether one of its identifiers opted out (then nothing is
    tracked). The uid is None when the batch names no identifier (then `_store` decides as
    it always did). None when Redis cannot answer within ten times
    the Redis deadline (counted): whether the batch's identifiers opted out (an opt-out by
    first-party id, where no cookie says so) is unknown, so nothing of it may be stored or
    buffered; the batch is refused as when the buffer is full (503, the tag sends it again)."""
    if fpid is None and not identifies:
        return None, False
    app = request.app
    advertisers = [e.advertiser for e in events] + [e.advertiser for e in identifies]
    wait = app[SETTINGS].redis_deadline_ms / 1000 * IDENTITY_DEADLINE_FACTOR
    give_up_at = time.monotonic() + wait
    resolving = app[IDENTITY].shop_uid(
        gates.uid, advertisers, fpid, identifies, time.time(), give_up_at
    )
    try:
        uid = await within(resolving, wait)
    except (RedisError, OSError, TimeoutError):
        app[METRICS].store_errors.labels("identity").inc()
        return None
    return uid, uid is None


async def _landing_click(
    request: web.Request, kclid: str | Reject | None, uid: str | None, advertisers: list[str]
) -> None:
    """A landing page's click id (`kclid`, see adserver.delivery.click_ids): a valid one of
    an advertiser of the batch makes that click the last touch of the shopper the batch was
    stored for (not counted again), so a purchase reported later is attributed to it. A bad,
    forged, expired or another advertiser's click id changes nothing (counted)."""
    if kclid is None:
        return
    app = request.app
    if isinstance(kclid, Reject):
        app[METRICS].tracking_rejects.labels(kclid.reason).inc()
        return
    if uid is None:
        return
    click = open_click_id(app[SIGNER], kclid, app[SETTINGS].click_window_days * 86400)
    if not isinstance(click, InvalidToken) and click.placement.advertiser not in advertisers:
        click = InvalidToken("other_advertiser")
    if isinstance(click, InvalidToken):
        app[METRICS].click_ids.labels(f"tag_{click.reason}").inc()
        return
    touch = Click(uid, click.placement, click.sku, click.at, touch_only=True)
    await app[CLICK_WRITER].write([touch])  # kept and replayed if Redis cannot take it now
    app[METRICS].click_ids.labels("tag_touch").inc()


async def tag_script(request: web.Request) -> web.StreamResponse:
    source = tag_source(request.app[SETTINGS].click_id_param)
    return javascript(source, cache_seconds=TAG_CACHE_SECONDS)


TAG_CLICK_ID_PARAM = 'const CLICK_ID_PARAM = "kclid";'


@functools.cache
def tag_source(click_id_param: str) -> str:
    """tag.js reading the click id under the configured name (letters, digits, underscores:
    see Settings); made once per name, so every answer is the same bytes."""
    return TAG_JS.replace(TAG_CLICK_ID_PARAM, f'const CLICK_ID_PARAM = "{click_id_param}";')
