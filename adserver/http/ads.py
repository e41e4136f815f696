"""Partner-side endpoints: `/ad` (iframe HTML), `/ad.js` (script), `/ad.json`, and the
sealed click redirects (`/c/TOKEN/LINK` for an ad's product, `/c/TOKEN` for a link with a token
of its own) and the `/i/TOKEN` rendered beacon. Each handler parses (pure), acts through the
decision core and the store, and answers."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from adserver.core.decision import Explanation, Slot, decide
from adserver.core.product import clean_url
from adserver.core.shopper import Shopper
from adserver.core.value_segments import shopper_values
from adserver.delivery.click_ids import mint_click_id, with_click_id
from adserver.delivery.served_ad import (
    AD_PURPOSE,
    CLICK_PURPOSE,
    RENDER_PURPOSE,
    UNCOUNTED_IMPRESSION,
    ServedAd,
    build_ad,
    link_index,
    placement_from_token,
    placement_of,
    sealed_ad,
)
from adserver.delivery.tokens import InvalidToken
from adserver.http.ad_request import BadAdRequest, parse_ad_request
from adserver.http.admin.auth import bearer_token
from adserver.http.app_keys import (
    CLICK_WRITER,
    GEO,
    IDENTITY,
    IMPRESSION_CAPS,
    MARKET,
    METRICS,
    NEIGHBOURS,
    RENDERER,
    SETTINGS,
    SHOWN_WRITER,
    SIGNER,
    STORE,
)
from adserver.http.edge.middleware import public_base_url
from adserver.http.responses import (
    creative_html,
    gif,
    gzipped,
    javascript,
    json_error,
    json_response,
    stylesheet,
)
from adserver.identity.eid_signatures import (
    EidSignature,
    MalformedSignature,
    parse_signature,
    refusal,
)
from adserver.identity.gates import Gates
from adserver.identity.identifiers import valid_email_sha256
from adserver.identity.uid_cookie import is_secure_context, set_uid_cookie
from adserver.runtime.waiting import within
from adserver.store import Placement, RedisError
from adserver.store.ledger import RENDER_BEACON_SECONDS, Click, Shown

log = logging.getLogger(__name__)

# The creative is never in the partner's page: the script inserts a cross-origin iframe on
# Kaeru's `/ad` with the same query, which decides, counts and renders (once). The sandbox runs
# no script and navigates the top page only on a click; `allow-same-origin` leaves the frame
# Kaeru's origin (still cross-origin to the partner, and without scripts nothing can use it):
# with an opaque origin Chromium keeps nothing the frame loads in its HTTP cache, so the
# creative stylesheet would be fetched again with every ad.
AD_JS = (
    "(function(){{var s=document.currentScript,f=document.createElement('iframe');"
    "f.src={src};f.width='{w}';f.height='{h}';f.title='Advertisement';"
    "f.setAttribute('scrolling','no');f.style.border='0';f.setAttribute('sandbox','allow-popups "
    "allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation "
    "allow-same-origin');"
    "if(s&&s.parentNode){{s.parentNode.insertBefore(f,s.nextSibling)}}"
    "else{{document.body.appendChild(f)}}}})();"
)


# Distinct publisher-provided hashed e-mails (`eid=` on `/ad`, `/ad.js`: signed by the
# publisher, no token) one client address gets resolved an hour: a reader's own, sent with
# every ad, is one. An eid counts there only with its publisher's signature (see
# `adserver.identity.eid_signatures`: a hash alone is no secret); signatures read off
# publishers' pages and replayed from one address are bounded too. Past it the ad is not
# personalised by `eid` (kaeru_eids_over_cap_total). `/ad.json` with the publisher's token
# (its server, speaking for its readers) is not capped.
EIDS_PER_ADDRESS_HOUR = 50

# What an iframe shows for a bad request: nothing (JSON would be printed inside the partner's
# page). Not empty: some browsers show their own error page for an empty 4xx document.
EMPTY_DOCUMENT = "<!doctype html><html><head><title></title></head><body></body></html>"


def base_url(request: web.Request) -> str:
    return public_base_url(request)


def _bad_request(request: web.Request, bad: BadAdRequest) -> web.Response:
    request.app[METRICS].bad_requests.labels("ad", bad.reason).inc()
    return json_error(400, bad.message, **bad.details)


def _bad_frame_request(request: web.Request, bad: BadAdRequest) -> web.Response:
    request.app[METRICS].bad_requests.labels("ad", bad.reason).inc()
    return creative_html(EMPTY_DOCUMENT, status=400)


def _locate(request: web.Request, slot: Slot) -> Slot:
    """The slot with the shopper's country (the IP is looked up, never kept). Behind trusted
    proxies `request.remote` is already the client's address (adserver.http.edge)."""
    return replace(slot, country=request.app[GEO].country(request.remote))


@dataclass(frozen=True, slots=True)
class PartnerEid:
    """A well-formed `eid` and, on `/ad` and `/ad.js`, the publisher's signature of it
    (None: unsigned; `/ad.json` needs none, its bearer token speaks for the publisher)."""

    eid: str
    signed: EidSignature | None = None


def _eid(
    request: web.Request, slot: Slot, *, needs_token: bool
) -> PartnerEid | None | BadAdRequest:
    """The publisher-provided hashed e-mail (`eid=`: SHA-256 hex of the trimmed, lowercased
    address), None when absent, well-formed or a 400. On `/ad.json` (whose answer the
    partner's page reads) only with the publisher's own token (KAERU_PUBLISHERS) or the
    operator's; elsewhere with the signature `eid_sig`, `eid_exp` (checked by `_vouched`)."""
    query = request.query
    raw = query.get("eid")
    if raw is None or raw == "":
        return None
    eid = valid_email_sha256(raw)
    if eid is None:
        return BadAdRequest("bad_eid", "eid must be the SHA-256 hex (64 lowercase) of an e-mail")
    if needs_token:
        token = bearer_token(request)
        settings = request.app[SETTINGS]
        if token is None or (
            settings.publisher_of_token(token) != slot.publisher and not settings.is_operator(token)
        ):
            return BadAdRequest(
                "eid_without_token", "eid on /ad.json needs the publisher's bearer token"
            )
        return PartnerEid(eid)
    signed = parse_signature(query.get("eid_sig"), query.get("eid_exp"))
    if isinstance(signed, MalformedSignature):
        return BadAdRequest(signed.reason, signed.message)
    return PartnerEid(eid, signed)


def _vouched(request: web.Request, slot: Slot, partner: PartnerEid | None) -> str | None:
    """The eid of `/ad` if its publisher signed it (for this `pub=`, unexpired, at most a day
    ahead), else None: the ad is not personalised by it, and the refusal is counted
    (kaeru_eids_refused_total{reason}). Pure: no Redis."""
    if partner is None:
        return None
    settings = request.app[SETTINGS]
    token = settings.publishers.get(slot.publisher)
    refused = refusal(token, slot.publisher, partner.eid, partner.signed, time.time())
    if refused is not None:
        request.app[METRICS].eids_refused.labels(refused).inc()
        return None
    return partner.eid


async def _personal_uid(
    request: web.Request, gates: Gates, eid: str | None, *, eid_capped: bool
) -> str | None:
    """The uid cookie the gates allow, else (with the same gates) the uid linked to the
    publisher's hashed e-mail: one round trip more, within the Redis deadline. `eid_capped`:
    the eid came signed on `/ad`, without a token (see EIDS_PER_ADDRESS_HOUR)."""
    uid = gates.personal_uid()
    if uid is not None or eid is None or gates.bot or gates.opted_out or not gates.consented:
        return uid
    app = request.app
    if eid_capped and not app[IMPRESSION_CAPS].count_distinct(
        "eid", request.remote or "", eid, EIDS_PER_ADDRESS_HOUR, time.time()
    ):
        app[METRICS].eids_over_cap.inc()
        return None
    try:
        return await within(app[IDENTITY].partner_uid(eid), app[SETTINGS].redis_deadline_ms / 1000)
    except (RedisError, OSError, TimeoutError):
        app[METRICS].store_errors.labels("identity").inc()
        return None


async def _serve(
    request: web.Request,
    slot: Slot,
    explanation: Explanation | None = None,
    eid: str | None = None,
    *,
    eid_capped: bool = True,
    gates: Gates,
) -> ServedAd | None:
    """Decide and count the impression; a Redis failure degrades to a non-personalised ad.
    With an `explanation` (debug) nothing is counted. `eid`: a publisher-provided hashed
    e-mail its publisher vouched for (see `_eid`, `_vouched`), used when no uid cookie is;
    `eid_capped`: it came without a token. `gates`: the request's, built by the caller, which
    answers with them too (see `_refresh_uid`)."""
    app = request.app
    store, metrics = app[STORE], app[METRICS]
    bot, uid = gates.bot, await _personal_uid(request, gates, eid, eid_capped=eid_capped)
    deadline = app[SETTINGS].redis_deadline_ms / 1000
    try:
        shopper = await within(store.load_shopper(uid), deadline)
    except (RedisError, OSError, TimeoutError) as exc:
        metrics.store_errors.labels("load_shopper").inc()
        log.warning("profile read failed, serving non-personalised: %r", exc)
        shopper = Shopper(None)
    suggestions = app[NEIGHBOURS].cached_suggestions(shopper)
    if suggestions is None:  # a list never fetched yet
        try:
            suggestions = await within(app[NEIGHBOURS].suggest(shopper), deadline)
        except (RedisError, OSError, TimeoutError):
            metrics.store_errors.labels("neighbours").inc()
            suggestions = {}
    others = list(app[SETTINGS].advertisers)
    random.shuffle(others)
    slot = _locate(request, slot)
    now = time.time()
    market = app[MARKET]
    values = shopper_values(shopper, market.standing, market.intervals)  # customer value
    decision = decide(shopper, market, slot, others, now, suggestions, explanation, values)
    if decision is None:
        metrics.no_fill.inc()
        return None
    counts = explanation is None and not bot and _counts_impression(request, shopper, slot, now)
    served = build_ad(
        decision, slot, base_url(request), app[SIGNER], app[RENDERER], now, counted=counts
    )
    if explanation is None and bot:
        metrics.bot_requests.labels("ad").inc()
    elif explanation is None:
        metrics.ads.labels(decision.strategy).inc()
        skus = tuple(pick.product.id for pick in decision.picks)
        if not counts:
            metrics.impressions_uncounted.inc()
        # Counted by group commit after the answer: the decision costs one round trip.
        shown = Shown(uid, placement_of(decision, slot), skus, now, counted=counts)
        app[SHOWN_WRITER].write_later([shown])
    return served


def _counts_impression(request: web.Request, shopper: Shopper, slot: Slot, now: float) -> bool:
    """Whether this impression counts (see `adserver.delivery.impression_caps`): a browser
    Kaeru knows (its uid has a profile) is capped by uid (and with the others of its publisher
    and address); anyone else (no cookie, or a made-up one) by publisher, address and
    User-Agent, hashed in memory, never kept."""
    caps = request.app[IMPRESSION_CAPS]
    address, user_agent = _client(request)
    if shopper.uid is not None and shopper.histories:
        return caps.count_browser(shopper.uid, now, slot.publisher, address)
    return caps.count_anonymous(slot.publisher, address, user_agent, now)


def _client(request: web.Request) -> tuple[str, str]:
    """The client's address and User-Agent, for the in-memory caps only (never kept). Behind
    trusted proxies `request.remote` is already the client's address (adserver.http.edge)."""
    return request.remote or "", request.headers.get("User-Agent", "")


def _refresh_uid(
    request: web.Request, response: web.StreamResponse, gates: Gates
) -> web.StreamResponse:
    """The uid cookie again (its lifetime renewed) when the gates allow keeping it; `gates`
    are those `_serve` decided with (each answer worked out once per request)."""
    settings = request.app[SETTINGS]
    uid = gates.uid
    if uid is not None and gates.consented and not gates.opted_out:
        set_uid_cookie(
            response,
            uid,
            secure=is_secure_context(request, settings.public_url),
            domain=settings.cookie_domain,
        )
    return response


async def ad_html(request: web.Request) -> web.StreamResponse:
    slot = parse_ad_request(
        request.query, request.app[RENDERER].formats, request.app[SETTINGS].publishers
    )
    if isinstance(slot, BadAdRequest):
        return _bad_frame_request(request, slot)
    partner = _eid(request, slot, needs_token=False)
    if isinstance(partner, BadAdRequest):
        return _bad_frame_request(request, partner)
    gates = Gates.of_query(request, request.app[SETTINGS])
    served = await _serve(request, slot, eid=_vouched(request, slot, partner), gates=gates)
    html = served.html() if served else request.app[RENDERER].no_fill(slot.size)
    return _refresh_uid(request, gzipped(request, creative_html(html)), gates)


async def creative_stylesheet(request: web.Request) -> web.StreamResponse:
    """`/static/creative.VERSION.css`: the stylesheet every creative links (see
    `adserver.http.responses.stylesheet` for how long it is kept)."""
    sheet = request.app[RENDERER].stylesheet
    if sheet is None:
        return json_error(404, "no creative stylesheet")
    return stylesheet(request, sheet, current=request.path == sheet.path)


async def ad_script(request: web.Request) -> web.StreamResponse:
    """`/ad.js`: a script that frames `/ad` with the same query (`eid`, `eid_sig` and `eid_exp`
    with it, checked there); it decides nothing."""
    slot = parse_ad_request(
        request.query, request.app[RENDERER].formats, request.app[SETTINGS].publishers
    )
    if isinstance(slot, BadAdRequest):
        return _bad_request(request, slot)
    bad_eid = _eid(request, slot, needs_token=False)
    if isinstance(bad_eid, BadAdRequest):
        return _bad_request(request, bad_eid)
    creative = request.app[RENDERER].formats[slot.size]
    src = f"{base_url(request)}/ad?{urlencode(list(request.query.items()), quote_via=quote)}"
    src_literal = orjson.dumps(src).decode().replace("<", "\\u003c")
    return javascript(AD_JS.format(src=src_literal, w=creative.width, h=creative.height))


async def ad_json(request: web.Request) -> web.StreamResponse:
    slot = parse_ad_request(
        request.query, request.app[RENDERER].formats, request.app[SETTINGS].publishers
    )
    if isinstance(slot, BadAdRequest):
        return _bad_request(request, slot)
    with_html = request.query.get("html", "0")
    if with_html not in ("0", "1"):
        return _bad_request(request, BadAdRequest("bad_html", "html must be 0 or 1"))
    explanation = None
    if request.query.get("debug") == "1":
        token = bearer_token(request)
        if token is None or not request.app[SETTINGS].is_operator(token):
            return json_error(403, "debug=1 needs the operator token")
        explanation = Explanation()
    partner = _eid(request, slot, needs_token=True)
    if isinstance(partner, BadAdRequest):
        if partner.reason == "eid_without_token":
            request.app[METRICS].bad_requests.labels("ad", partner.reason).inc()
            return json_error(403, partner.message)
        return _bad_request(request, partner)
    eid = partner.eid if partner else None
    gates = Gates.of_query(request, request.app[SETTINGS])
    served = await _serve(request, slot, explanation, eid, eid_capped=False, gates=gates)
    html = with_html == "1"
    if explanation is not None:
        answer = served.as_json(with_html=html) if served else {"no_fill": True}
        return json_response({**answer, "explanation": explanation.as_json()})
    if served is None:
        return web.Response(status=204, headers={"Cache-Control": "no-store"})
    response = gzipped(request, json_response(served.as_json(with_html=html)))
    return _refresh_uid(request, response, gates)


async def click(request: web.Request) -> web.StreamResponse:
    """`/c/TOKEN`: a link with its own token (recommendations; ads served before their links
    shared one token, until they expire): verify the signature and age, count the click,
    redirect to the product."""
    app = request.app
    token = request.match_info["token"]
    if "/" in token:  # `/c/TOKEN%2FLINK`: an ad's link, its slash percent-encoded on the way
        ad_token, link = token.split("/", 1)
        return await _ad_click(request, ad_token, link)
    fields = app[SIGNER].verify(CLICK_PURPOSE, token, app[SETTINGS].click_ttl_days * 86400)
    parsed = None if isinstance(fields, InvalidToken) else placement_from_token(fields)
    if parsed is None or len(parsed[1]) not in (2, 3):
        reason = fields.reason if isinstance(fields, InvalidToken) else "malformed"
        return _refused_click(request, reason)
    placement, (sku, stored_landing, *_) = parsed
    return await _count_click(request, placement, sku, stored_landing, token)


async def ad_click(request: web.Request) -> web.StreamResponse:
    """`/c/TOKEN/LINK`: one product of an ad (its token shared by the ad's links, LINK naming
    the product: see `adserver.delivery.served_ad.build_ad`). Verify the token and its age,
    then the link's name, count the click, redirect to that product."""
    return await _ad_click(request, request.match_info["token"], request.match_info["link"])


async def _ad_click(request: web.Request, token: str, link: str) -> web.StreamResponse:
    app = request.app
    signer = app[SIGNER]
    fields = signer.verify(AD_PURPOSE, token, app[SETTINGS].click_ttl_days * 86400)
    if isinstance(fields, InvalidToken):
        return _refused_click(request, fields.reason)
    ad = sealed_ad(fields)
    if ad is None:
        return _refused_click(request, "malformed")
    index = link_index(signer, token, link)
    if index is None:
        return _refused_click(request, "bad_link")
    product = ad.click(index)
    if product is None:  # a name only Kaeru can give, but for a product the ad did not show
        return _refused_click(request, "bad_index")
    placement, sku, stored_landing = product
    # The link (token and name) is what a replay repeats: counted once, as a link of its own.
    return await _count_click(request, placement, sku, stored_landing, f"{token}/{link}")


def _refused_click(request: web.Request, reason: str) -> web.Response:
    request.app[METRICS].click_rejects.labels(reason).inc()
    return json_error(400, "invalid or expired click link")


async def _count_click(
    request: web.Request, placement: Placement, sku: str, stored_landing: str, link: str
) -> web.StreamResponse:
    """Count a verified click on `link` (once per link) and redirect to its landing."""
    app = request.app
    metrics = app[METRICS]
    # Checked again here: a catalog stored by an older Kaeru may hold a link no browser can
    # be sent to (a bad port, a soft hyphen in the host...): a 400, never a 500.
    landing = clean_url(stored_landing)
    if landing is None:
        return _refused_click(request, "bad_landing")
    gates = Gates(request, app[SETTINGS])
    if gates.bot:
        metrics.bot_requests.labels("click").inc()
        raise web.HTTPFound(landing, headers={"Cache-Control": "no-store"})
    now = time.time()
    address, user_agent = _client(request)
    if not app[IMPRESSION_CAPS].count_anonymous(
        f"click:{placement.publisher}", address, user_agent, now
    ):
        # A loop fetching ads and following every link: still redirected, not counted.
        metrics.clicks.labels("over_cap").inc()
        raise web.HTTPFound(landing, headers={"Cache-Control": "no-store"})
    uid = None if gates.opted_out else gates.uid
    click = Click(uid, placement, sku, now, link)
    # Waits at most the Redis deadline; a click Redis cannot take now is kept and replayed
    # (counted once all the same). `kaeru_clicks_total` is counted as clicks reach Redis.
    await app[CLICK_WRITER].write([click])
    raise web.HTTPFound(_landing_with_click_id(request, landing, click), headers=NO_STORE)


NO_STORE = {"Cache-Control": "no-store"}


def _landing_with_click_id(request: web.Request, landing: str, click: Click) -> str:
    """The landing URL with the counted click's id (`kclid`), or without when it would be too
    long (see adserver.delivery.click_ids)."""
    app = request.app
    click_id = mint_click_id(app[SIGNER], click.placement, click.sku, click.uid or "", click.at)
    url = with_click_id(landing, app[SETTINGS].click_id_param, click_id)
    app[METRICS].click_ids.labels("minted" if url else "too_long").inc()
    return url or landing


async def rendered(request: web.Request) -> web.StreamResponse:
    """`/i/TOKEN`: the creative was actually displayed. Always a GIF. TOKEN is the ad's (the
    one its click links share), or a beacon of its own (ads served before that, for the
    beacon's short lifetime)."""
    app = request.app
    signer, token = app[SIGNER], request.match_info["token"]
    fields = signer.verify(AD_PURPOSE, token, RENDER_BEACON_SECONDS)
    seen: tuple[Placement, str] | None = None
    if isinstance(fields, InvalidToken) and fields.reason == "bad_signature":
        fields = signer.verify(RENDER_PURPOSE, token, RENDER_BEACON_SECONDS)
        parsed = None if isinstance(fields, InvalidToken) else placement_from_token(fields)
        if parsed is not None and len(parsed[1]) == 1:  # an impression id (before: none)
            seen = parsed[0], parsed[1][0]
    elif not isinstance(fields, InvalidToken):
        ad = sealed_ad(fields)
        if ad is not None:
            seen = ad.placement, ad.impression if ad.counted else UNCOUNTED_IMPRESSION
    if seen is None:
        reason = fields.reason if isinstance(fields, InvalidToken) else "malformed"
        app[METRICS].tracking_rejects.labels(f"render_{reason}").inc()
        return gif()
    if Gates(request, app[SETTINGS]).bot:
        app[METRICS].bot_requests.labels("render").inc()
        return gif()
    placement, impression = seen
    if impression == UNCOUNTED_IMPRESSION:  # its impression was not counted: nor is its render
        app[METRICS].renders_uncounted.inc()
        return gif()
    render = Shown(None, placement, (), time.time(), rendered=True, impression=impression)
    app[SHOWN_WRITER].write_later([render])  # counted once per impression: see Ledger
    return gif()
