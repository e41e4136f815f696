"""`GET /api/v1/advertisers/{advertiser}/recommendations`: recommendations for the shop's
e-mails, server to server with the advertiser's token. Each product answered counts as an
impression of the `email` channel (it was produced for sending).

`?email_sha256=HEX|uid=UID&placement=P[&item=SKU][&n=N][&format=json|html]`: the products of
`/recs.json`'s placement (same engine, same exclusions, same caches) for the shopper the
hashed e-mail is linked to (`IdentityResolver.partner_uid`: a shopper who opted out is not
resolved), or the uid; their click links carry the `email` channel. An unknown or opted-out
shopper gets the placement's non-personalised products (popular ones), never an error, so the
answer does not tell whether an e-mail is known. `format=html`: the e-mail-safe block
(`adserver.recs.email_block`)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from adserver.delivery.served_ad import email_placement
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.app_keys import IDENTITY, METRICS, SETTINGS, SHOWN_WRITER, STORE
from adserver.http.recs import recommend_products
from adserver.http.responses import NO_STORE, json_error, json_response
from adserver.identity.identifiers import valid_email_sha256
from adserver.identity.uid_cookie import UID_PATTERN
from adserver.recs.email_block import email_block
from adserver.recs.placements import BadRecsQuery, RecsQuery, parse_recs_query
from adserver.runtime.waiting import within
from adserver.store import RedisError
from adserver.store.ledger import Shown

ROUTE = "recommendations"
FORMATS = ("json", "html")


@dataclass(frozen=True, slots=True)
class EmailRecsQuery:
    recs: RecsQuery
    email_sha256: str | None
    uid: str | None
    format: str


def parse_email_recs_query(
    advertiser: str, query: Mapping[str, str]
) -> EmailRecsQuery | BadRecsQuery:
    """The query of an e-mail recommendation, or why not (the reason is the metric label)."""
    email, uid = query.get("email_sha256"), query.get("uid")
    if (email is None) == (uid is None):
        return BadRecsQuery("missing_shopper", "give exactly one of email_sha256 or uid")
    if email is not None and valid_email_sha256(email) is None:
        return BadRecsQuery(
            "bad_email_sha256", "email_sha256 must be the SHA-256 of the e-mail, lowercase hex"
        )
    if uid is not None and not UID_PATTERN.match(uid):
        return BadRecsQuery("bad_uid", "uid must be a Kaeru uid")
    answer_format = query.get("format", "json")
    if answer_format not in FORMATS:
        return BadRecsQuery("bad_format", "format must be json or html")
    recs_params = {k: query[k] for k in ("placement", "item", "n") if k in query}
    recs = parse_recs_query({"a": advertiser, **recs_params}, (advertiser,))
    if isinstance(recs, BadRecsQuery):
        return recs
    return EmailRecsQuery(recs, email, uid, answer_format)


async def _shopper_of(request: web.Request, advertiser: str, email: str) -> str | None:
    """The shopper an e-mail resolves to (the uid most recently linked to it), only if that
    shopper kept this very e-mail at this shop (a signed identify: see
    adserver.identity.email_signatures): a browser that merely claimed someone's hash gets
    no e-mail of theirs filled with its own views. Two round trips."""
    app = request.app
    deadline = app[SETTINGS].redis_deadline_ms / 1000
    uid = await within(app[IDENTITY].partner_uid(email), deadline)
    if uid is None:
        return None
    kept = await within(app[STORE].email_audiences.kept_email(uid, advertiser), deadline)
    return uid if kept is not None and hmac.compare_digest(kept, email) else None


async def recommendations(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    app = request.app
    metrics = app[METRICS]
    query = parse_email_recs_query(advertiser, request.query)
    if isinstance(query, BadRecsQuery):
        metrics.bad_requests.labels(ROUTE, query.reason).inc()
        return json_error(400, query.message, reason=query.reason)
    uid = query.uid
    if query.email_sha256 is not None:
        try:
            uid = await _shopper_of(request, advertiser, query.email_sha256)
        except (RedisError, OSError, TimeoutError):
            metrics.store_errors.labels("identity").inc()
            uid = None  # answered non-personalised, as /recs.json does on a failed read
    chosen = await recommend_products(request, query.recs, uid, email_placement)
    products, personalised = chosen.products, chosen.personalised
    metrics.recs.labels(query.recs.placement, "filled" if products else "empty").inc()
    # produced for sending: each product an impression of the `email` channel (no beacon: an
    # e-mail's open pixel says little since mail clients fetch images themselves)
    now = time.time()
    app[SHOWN_WRITER].write_later(
        [
            Shown(None, p, (str(q["id"]),), now)
            for p, q in zip(chosen.placements, products, strict=True)
        ]
    )
    if query.format == "html":
        response = web.Response(text=email_block(products), content_type="text/html")
    else:
        response = json_response(
            {
                "advertiser": advertiser,
                "placement": query.recs.placement,
                "personalised": personalised,
                "products": products,
            }
        )
    response.headers.update(NO_STORE)
    return response
