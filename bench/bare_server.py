"""The baseline: a bare aiohttp handler answering Kaeru's 43-byte GIF with a `uid` cookie.

Same framework, event loop (uvloop) and response shape as Kaeru's `/px`, and nothing else: no
middleware, no parsing, no Redis. `python bench/bare_server.py PORT`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys

from aiohttp import web

from adserver.http.responses import NO_STORE, TRANSPARENT_GIF

UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
UID_MAX_AGE_SECONDS = 396 * 86400


async def pixel(request: web.Request) -> web.StreamResponse:
    uid = request.cookies.get("uid")
    if uid is None or not UID_PATTERN.match(uid):
        uid = secrets.token_urlsafe(16)
    response = web.Response(body=TRANSPARENT_GIF, content_type="image/gif", headers=NO_STORE)
    response.set_cookie(
        "uid",
        uid,
        max_age=UID_MAX_AGE_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="None",
    )
    return response


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/{tail:.*}", pixel)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a Kaeru dependency on Linux
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, loop=loop, access_log=None, print=None)


if __name__ == "__main__":
    main()
