"""`/optout`: a shopper says no, and may take it back.

`GET /optout` sets a 5-year `optout=1` cookie, forgets everything Kaeru knew about the
browser's uid (and every uid linked to it through a first-party id, hashed e-mail or
customer id: `adserver.http.app_keys.forget_linked`) and stops tracking it. Any page may
send a shopper there: it only protects them.
Taking it back is another matter, so only the opt-out page's own button does it: a
`POST /optout` the browser marks `Sec-Fetch-Site: same-origin` (or, from a browser that does
not send Fetch metadata, whose `Origin` is Kaeru's own). Anything else (another site's form,
image or script, a bare request) answers 403 and changes nothing, and `GET /optout?undo=1`
(the old undo link) only shows the button. The pages refuse to be framed, so that no other
site can lay the button under a shopper's click (clickjacking).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from adserver.delivery.tokens import InvalidToken
from adserver.http.app_keys import IDENTITY, METRICS, SETTINGS, SIGNER, STORE, forget_linked
from adserver.identity.gates import OPTOUT_COOKIE
from adserver.identity.identifiers import valid_fpid
from adserver.identity.uid_cookie import UID_COOKIE, is_secure_context, read_uid
from adserver.store import RedisError

OPTOUT_MAX_AGE_SECONDS = 5 * 365 * 86400
UNDO_PURPOSE = "optout-undo"  # sealed identifiers on the undo button
MAX_UNDONE = 100  # identifiers an opt-out remembers itself on (a sealed token stays < 4 KiB)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Kaeru: {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}
a{{color:#0b5}}button{{font:inherit;padding:.3em 1em}}</style></head>
<body><h1>{title}</h1><p>{text}</p>{action}</body></html>"""
UNDO_HIDDEN = '<input type="hidden" name="undo" value="1">'
UNDO_BUTTON = (
    '<form method="post" action="/optout">'
    + UNDO_HIDDEN
    + '<button type="submit">Undo: allow personalised ads again</button></form>'
)
OPT_OUT_LINK = '<p><a href="/optout">Opt out</a></p>'
OPTED_OUT = PAGE.format(
    title="You are opted out",
    text="This browser will not be tracked by Kaeru and will only see non-personalised ads. "
    "What Kaeru knew about it has been deleted. The choice is kept in a cookie for five "
    "years; clearing your cookies removes it.",
    action=UNDO_BUTTON,
)
CONFIRM_UNDO = PAGE.format(
    title="Allow personalised ads again?",
    text="If this browser is opted out, the button below takes that back: Kaeru will track "
    "it again and may show it personalised ads.",
    action=UNDO_BUTTON + OPT_OUT_LINK,
)
OPTED_IN = PAGE.format(
    title="Personalised ads are allowed again",
    text="The opt-out cookie has been removed. You can opt out again at any time.",
    action=OPT_OUT_LINK,
)
REFUSED = PAGE.format(
    title="Nothing was changed",
    text="An opt-out can only be taken back with the button on Kaeru's own opt-out page, "
    "not from another site.",
    action='<p><a href="/optout?undo=1">Go to that page</a></p>',
)


def _cookie_args(request: web.Request) -> dict[str, object]:
    secure = is_secure_context(request, request.app[SETTINGS].public_url)
    return {
        "path": "/",
        "domain": request.app[SETTINGS].cookie_domain,
        "secure": secure,
        "httponly": True,
        "samesite": "None" if secure else "Lax",
    }


def _page(html: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=html, content_type="text/html", headers=PAGE_HEADERS)


def cross_site_reason(fetch_site: str | None, origin: str | None, own_origin: str) -> str | None:
    """Why a request may not come from Kaeru's own page, or None when it does. The browser's
    `Sec-Fetch-Site` decides where it is sent; `Origin` stands in where it is not."""
    if fetch_site is not None:
        return None if fetch_site == "same-origin" else "cross_site"
    if origin is None:
        return "no_origin"
    return None if origin.lower() == own_origin.lower() else "cross_site"


async def optout(request: web.Request) -> web.StreamResponse:
    """`GET /optout`: opt out (from anywhere). `?undo=1` only offers the undo button."""
    if request.query.get("undo") == "1":
        return _page(CONFIRM_UNDO)
    uid = read_uid(request.cookies)
    first_party = _first_party(request, request.query)
    if uid is not None or first_party is not None:
        tokens = [first_party] if first_party else []
        try:
            # ... and every uid linked to it. Named by its first-party id (Kaeru's cookies
            # blocked: the optout cookie will not hold either), the identifiers reached
            # remember the opt-out, so that no site tracks or personalises them again.
            linked, _ = await forget_linked(request.app, [uid] if uid else [], tokens)
            suppressed = sorted(linked.identifiers)[:MAX_UNDONE] if tokens else []
            await request.app[STORE].identities.suppress(suppressed, OPTOUT_MAX_AGE_SECONDS)
        except (RedisError, OSError):
            request.app[METRICS].store_errors.labels("forget").inc()
            return web.Response(
                status=503, text="Please try again in a moment.", headers=PAGE_HEADERS
            )
    else:
        suppressed = []
    response = _page(_opted_out(request, suppressed))
    response.set_cookie(OPTOUT_COOKIE, "1", max_age=OPTOUT_MAX_AGE_SECONDS, **_cookie_args(request))  # type: ignore[arg-type]
    response.del_cookie(UID_COOKIE, **_cookie_args(request))  # type: ignore[arg-type]
    return response


def _first_party(request: web.Request, fields: Mapping[str, object]) -> str | None:
    """`a=ADV&fpid=FPID` (the shop tag's first-party id, see `kaeru.optoutUrl` in tag.js): its
    identifier token, or None when absent or malformed. Where Kaeru's own cookie is blocked,
    this is how the opt-out page knows whom it protects."""
    advertiser, fpid = fields.get("a"), valid_fpid(fields.get("fpid"))
    if not isinstance(advertiser, str) or advertiser not in request.app[SETTINGS].advertisers:
        return None
    return None if fpid is None else request.app[IDENTITY].hasher.fpid(advertiser, fpid)


def _opted_out(request: web.Request, suppressed: list[str]) -> str:
    """The opted-out page. Its undo button carries the identifiers the opt-out was remembered
    on, sealed (`adserver.delivery.tokens.Signer`: no page learns them, none can be forged to
    lift someone else's opt-out), so that taking it back lifts exactly those."""
    if not suppressed:
        return OPTED_OUT
    sealed = request.app[SIGNER].sign(UNDO_PURPOSE, list(suppressed))  # URL-safe base64
    hidden = f'<input type="hidden" name="ids" value="{sealed}">'
    return OPTED_OUT.replace(UNDO_HIDDEN, UNDO_HIDDEN + hidden)


def _undone(request: web.Request, sealed: object) -> list[str]:
    """The identifiers an undo button carries (see `_opted_out`); none when absent or
    not sealed by Kaeru for this."""
    if not isinstance(sealed, str) or not sealed:
        return []
    fields = request.app[SIGNER].verify(UNDO_PURPOSE, sealed, OPTOUT_MAX_AGE_SECONDS)
    if isinstance(fields, InvalidToken):
        request.app[METRICS].bad_requests.labels("optout", "bad_undo_token").inc()
        return []
    return [f for f in fields if isinstance(f, str)]


async def undo_optout(request: web.Request) -> web.StreamResponse:
    """`POST /optout`: the opt-out page's undo button, and nothing else, removes the cookie
    (and the opt-out remembered on the identifiers the button carries)."""
    own_origin = f"{request.scheme}://{request.host}"
    headers = request.headers
    reason = cross_site_reason(headers.get("Sec-Fetch-Site"), headers.get("Origin"), own_origin)
    if reason is not None:
        request.app[METRICS].bad_requests.labels("optout", reason).inc()
        return _page(REFUSED, status=403)
    undone = _undone(request, (await request.post()).get("ids"))
    if undone:
        try:
            await request.app[STORE].identities.unsuppress(undone)
        except (RedisError, OSError):
            request.app[METRICS].store_errors.labels("forget").inc()
            return web.Response(
                status=503, text="Please try again in a moment.", headers=PAGE_HEADERS
            )
    response = _page(OPTED_IN)
    response.del_cookie(OPTOUT_COOKIE, **_cookie_args(request))  # type: ignore[arg-type]
    return response
