"""`GET /optout`: a shopper says no. Kaeru sets a 5-year `optout=1` cookie, forgets everything
it knew about the browser's uid, and stops tracking it; `?undo=1` takes it back."""

from __future__ import annotations

from aiohttp import web

from adserver.context import METRICS, SETTINGS, STORE, forget_buffered
from adserver.store import RedisError
from pixel.identity import OPTOUT_COOKIE, UID_COOKIE, is_secure_context, read_uid

OPTOUT_MAX_AGE_SECONDS = 5 * 365 * 86400
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Kaeru: {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}
a{{color:#0b5}}</style></head>
<body><h1>{title}</h1><p>{text}</p><p><a href="{link}">{link_text}</a></p></body></html>"""
OPTED_OUT = PAGE.format(
    title="You are opted out",
    text="This browser will not be tracked by Kaeru and will only see non-personalised ads. "
    "What Kaeru knew about it has been deleted. The choice is kept in a cookie for five "
    "years; clearing your cookies removes it.",
    link="/optout?undo=1",
    link_text="Undo: allow personalised ads again",
)
OPTED_IN = PAGE.format(
    title="Personalised ads are allowed again",
    text="The opt-out cookie has been removed. You can opt out again at any time.",
    link="/optout",
    link_text="Opt out",
)


def _cookie_args(request: web.Request) -> dict[str, object]:
    secure = is_secure_context(request)
    return {
        "path": "/",
        "domain": request.app[SETTINGS].cookie_domain,
        "secure": secure,
        "httponly": True,
        "samesite": "None" if secure else "Lax",
    }


async def optout(request: web.Request) -> web.StreamResponse:
    headers = {"Cache-Control": "no-store"}
    if request.query.get("undo") == "1":
        response = web.Response(text=OPTED_IN, content_type="text/html", headers=headers)
        response.del_cookie(OPTOUT_COOKIE, **_cookie_args(request))  # type: ignore[arg-type]
        return response
    uid = read_uid(request.cookies)
    if uid is not None:
        try:
            await forget_buffered(request.app, uid)
            await request.app[STORE].forget(uid, request.app[SETTINGS].advertisers)
        except (RedisError, OSError):
            request.app[METRICS].store_errors.labels("forget").inc()
            return web.Response(status=503, text="Please try again in a moment.", headers=headers)
    response = web.Response(text=OPTED_OUT, content_type="text/html", headers=headers)
    response.set_cookie(OPTOUT_COOKIE, "1", max_age=OPTOUT_MAX_AGE_SECONDS, **_cookie_args(request))  # type: ignore[arg-type]
    response.del_cookie(UID_COOKIE, **_cookie_args(request))  # type: ignore[arg-type]
    return response
