"""`GET /api/v1/advertisers/{advertiser}/audiences/{name}/members?since=T&email_sha256=HEX`:
whether the shopper of a hashed e-mail the shop's e-mail service has belongs to an e-mail
flow's audience, and what they viewed or left in the cart (`adserver.recs.audiences`), with
the advertiser's token.

Kaeru stores e-mails only as keyed hashes: it cannot list members by the SHA-256 the service
knows, so the service asks per address. A shopper who opted out, an unknown address or a
shopper with no history at this shop is no member: `{"members": []}`."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from adserver.http.admin.auth import authorize_advertiser
from adserver.http.app_keys import IDENTITY, METRICS, SETTINGS, STORE
from adserver.http.responses import NO_STORE, json_error, json_response, unavailable
from adserver.identity.identifiers import valid_email_sha256
from adserver.recs.audiences import AUDIENCES, membership
from adserver.runtime.waiting import within
from adserver.store import RedisError

ROUTE = "audiences"


def parse_since(raw: str | None) -> int | None:
    """`since`: unix seconds, a whole number."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    return int(raw)


def _bad(request: web.Request, reason: str, message: str) -> web.Response:
    request.app[METRICS].bad_requests.labels(ROUTE, reason).inc()
    return json_error(400, message, reason=reason)


async def members(request: web.Request) -> web.StreamResponse:
    advertiser = authorize_advertiser(request)
    app = request.app
    name = request.match_info["name"]
    query: Mapping[str, str] = request.query
    if name not in AUDIENCES:
        return _bad(request, "unknown_audience", "audience must be one of " + ", ".join(AUDIENCES))
    since = parse_since(query.get("since"))
    if since is None:
        return _bad(request, "bad_since", "since must be a time in unix seconds")
    email = valid_email_sha256(query.get("email_sha256"))
    if email is None:
        return _bad(
            request,
            "bad_email_sha256",
            "email_sha256 (the SHA-256 of the e-mail, lowercase hex) is required: "
            "Kaeru keeps no e-mail it could list",
        )
    deadline = app[SETTINGS].redis_deadline_ms / 1000
    try:
        uid = await within(app[IDENTITY].partner_uid(email), deadline)
        shopper = await within(app[STORE].load_shopper(uid), deadline)
    except (RedisError, OSError, TimeoutError):
        app[METRICS].store_errors.labels("audiences").inc()
        return unavailable("the store is unavailable; ask again", retry_after=5)
    history = next((h for h in shopper.histories if h.advertiser == advertiser), None)
    found = membership(name, history, since)
    listed = (
        [{"email_sha256": email, "items": list(found.items), "since": found.since}] if found else []
    )
    response = json_response({"audience": name, "since": since, "members": listed})
    response.headers.update(NO_STORE)
    return response
