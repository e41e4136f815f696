"""Small answer builders shared by the handlers (headers that must never be forgotten)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

# 1x1 transparent GIF, 43 bytes.
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Creatives contain no script; images may come from any http(s) shop CDN.
CREATIVE_CSP = (
    "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)


def gif() -> web.Response:
    return web.Response(body=TRANSPARENT_GIF, content_type="image/gif", headers=NO_STORE)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_bytes_response(data, status=status, dumps=orjson.dumps, headers=NO_STORE)


def json_error(status: int, message: str, **details: Any) -> web.Response:
    return json_response({"error": message, **details}, status=status)


def unavailable(message: str, retry_after: int) -> web.Response:
    """503 with Retry-After (seconds): nothing was done, the same request may come again."""
    response = json_error(503, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


# A creative's address carries what the partner passed (`eid`, a hashed e-mail; `kw`): the
# shop's image servers and landing pages it sends the browser to get Kaeru's origin at most,
# whatever the browser's default.
CREATIVE_REFERRER_POLICY = "strict-origin"


def creative_html(html: str, status: int = 200) -> web.Response:
    headers = {
        **NO_STORE,
        "Content-Security-Policy": CREATIVE_CSP,
        "Referrer-Policy": CREATIVE_REFERRER_POLICY,
    }
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)


def javascript(code: str, *, cache_seconds: int = 0) -> web.Response:
    cache = f"public, max-age={cache_seconds}" if cache_seconds else "no-store"
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    return web.Response(text=code, content_type="application/javascript", headers=headers)
