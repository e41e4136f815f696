"""`GET /api/v1/advertisers/{advertiser}/audiences/{name}/members?since=T[&cursor=C][&limit=N]`
(or `&email_sha256=HEX` for one address): an e-mail flow's audience, with the advertiser's
token — the hashed e-mails the shop's shoppers identified with at this shop, with what they
viewed or left in the cart (`adserver.recs.audiences`), page by page.

The listing walks the shop's index (`adserver.store.email_audiences`) oldest activity first
from `since`; `next_cursor` (sealed: it names no shopper, and only this listing takes it)
carries on after the last shopper looked at. A page holds at most `limit` members and may hold
fewer, even none, before the end: shoppers who are no member are skipped. A shopper who opted
out, was forgotten or never identified with an e-mail at this shop is never listed; with
`email_sha256`, an unknown address or a shopper with no history here is no member."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from adserver.delivery.tokens import InvalidToken
from adserver.http.admin.auth import authorize_advertiser
from adserver.http.app_keys import IDENTITY, MARKET, METRICS, SETTINGS, SIGNER, STORE
from adserver.http.responses import NO_STORE, json_error, json_response, unavailable
from adserver.identity.identifiers import valid_email_sha256
from adserver.recs.audiences import AUDIENCES, membership
from adserver.runtime.waiting import within
from adserver.store import RedisError

ROUTE = "audiences"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CURSOR_PURPOSE = "audience cursor"
CURSOR_MAX_AGE_SECONDS = 86400
# A page reads up to MAX_LIMIT profiles (about 20 ms here): more than the hot paths' deadline,
# less than the socket timeout.
LISTING_DEADLINE_SECONDS = 1.5


class _BadQuery(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_since(raw: str | None) -> int | None:
    """`since`: unix seconds, a whole number."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    return int(raw)


def parse_limit(raw: str | None) -> int | None:
    """`limit`: 1 to MAX_LIMIT members a page (DEFAULT_LIMIT when absent), else None."""
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        return None
    return int(raw)


def _bad(request: web.Request, reason: str, message: str) -> web.Response:
    request.app[METRICS].bad_requests.labels(ROUTE, reason).inc()
    return json_error(400, message, reason=reason)


def _unavailable(request: web.Request) -> web.Response:
    request.app[METRICS].store_errors.labels("audiences").inc()
    return unavailable("the store is unavailable; ask again", retry_after=5)


async def members(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    name = request.match_info["name"]
    query: Mapping[str, str] = request.query
    if name not in AUDIENCES:
        return _bad(request, "unknown_audience", "audience must be one of " + ", ".join(AUDIENCES))
    since = parse_since(query.get("since"))
    if since is None:
        return _bad(request, "bad_since", "since must be a time in unix seconds")
    try:
        if "email_sha256" in query:
            answer = await _one(request, advertiser, name, since, query["email_sha256"])
        else:
            answer = await _page(request, advertiser, name, since, query)
    except _BadQuery as bad:
        return _bad(request, bad.reason, str(bad))
    except (RedisError, OSError, TimeoutError):
        return _unavailable(request)
    response = json_response({"audience": name, "since": since, **answer})
    response.headers.update(NO_STORE)
    return response


async def _one(
    request: web.Request, advertiser: str, name: str, since: int, raw: str
) -> dict[str, Any]:
    """The single-address form: that shopper, if a member."""
    email = valid_email_sha256(raw)
    if email is None:
        raise _BadQuery(
            "bad_email_sha256",
            "email_sha256 must be the SHA-256 of the e-mail, 64 lowercase hex digits",
        )
    app = request.app
    deadline = app[SETTINGS].redis_deadline_ms / 1000
    uid = await within(app[IDENTITY].partner_uid(email), deadline)
    if uid is None:
        return {"members": []}
    # The uid the e-mail was last linked to is a member for it only if it kept that e-mail at
    # this shop (a signed identify): an unsigned identify of someone's hash links for ads only.
    entry = await within(app[STORE].email_audiences.entry(advertiser, uid), deadline)
    if entry.email_sha256 is None or not hmac.compare_digest(entry.email_sha256, email):
        return {"members": []}
    found = membership(name, entry.history, since, _sellable(request, advertiser))
    listed = [_member(email, found.items, found.since, None)] if found else []
    return {"members": listed}


async def _page(
    request: web.Request, advertiser: str, name: str, since: int, query: Mapping[str, str]
) -> dict[str, Any]:
    """One page of the listing and the cursor of the next (None: the end)."""
    app = request.app
    limit = parse_limit(query.get("limit"))
    if limit is None:
        raise _BadQuery("bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    after = _open_cursor(request, query.get("cursor"), advertiser, name, since)
    store = app[STORE].email_audiences
    page = await within(
        store.page(advertiser, since * 1000, after, limit), LISTING_DEADLINE_SECONDS
    )
    emails = [e.email_sha256 for e in page.entries if e.email_sha256]
    opted_out = await within(app[IDENTITY].opted_out_emails(emails), LISTING_DEADLINE_SECONDS)
    gone = [e for e in page.entries if e.email_sha256 is None]
    await within(store.drop(advertiser, gone), LISTING_DEADLINE_SECONDS)  # expired e-mails
    sellable = _sellable(request, advertiser)
    listed = []
    for entry in page.entries:
        if entry.email_sha256 is None or entry.email_sha256 in opted_out:
            continue
        found = membership(name, entry.history, since, sellable)
        if found:
            listed.append(_member(entry.email_sha256, found.items, found.since, entry.last_ms))
    cursor = None
    if page.more and page.entries:
        last = page.entries[-1]
        fields: list[object] = [advertiser, name, since, last.last_ms, last.uid]
        cursor = app[SIGNER].sign(CURSOR_PURPOSE, fields)
    return {"members": listed, "next_cursor": cursor}


def _open_cursor(
    request: web.Request, raw: str | None, advertiser: str, name: str, since: int
) -> tuple[int, str] | None:
    """The position a cursor of this very listing (advertiser, audience, since) carries."""
    if raw is None:
        return None
    fields = request.app[SIGNER].verify(CURSOR_PURPOSE, raw, CURSOR_MAX_AGE_SECONDS)
    if (
        isinstance(fields, InvalidToken)
        or len(fields) != 5
        or fields[:3]
        != [
            advertiser,
            name,
            since,
        ]
    ):
        raise _BadQuery(
            "bad_cursor",
            "cursor must be a next_cursor of this listing (same audience and since), "
            "at most a day old",
        )
    score, uid = fields[3], fields[4]
    if not isinstance(score, int) or not isinstance(uid, str):
        raise _BadQuery("bad_cursor", "cursor must be a next_cursor of this listing")
    return score, uid


def _sellable(request: web.Request, advertiser: str) -> Callable[[str], bool]:
    """Whether the shop still sells a product (in its catalog, in stock or orderable)."""
    catalog = request.app[MARKET].catalog(advertiser)

    def sellable(sku: str) -> bool:
        product = catalog.get(sku)
        return product is not None and product.in_stock

    return sellable


def _member(
    email: str, items: tuple[str, ...], since: float, last_ms: int | None
) -> dict[str, Any]:
    member: dict[str, Any] = {"email_sha256": email, "items": list(items), "since": since}
    if last_ms is not None:
        member["last_activity"] = last_ms / 1000
    return member
