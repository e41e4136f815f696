"""Small answer builders shared by the handlers (headers that must never be forgotten)."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from aiohttp import web

from creatives.renderer import Stylesheet

# 1x1 transparent GIF, 43 bytes.
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Creatives contain no script; images may come from any http(s) shop CDN; styles are Kaeru's
# own stylesheet (`'self'`: the creative's origin, Kaeru's, also in /ad.js's sandboxed frame)
# and the creative's inline size.
CREATIVE_CSP = (
    "default-src 'none'; img-src http: https: data:; style-src 'self' 'unsafe-inline'; "
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


# Answers at least this long are sent gzip-compressed to a client that accepts it: the ad's
# answers (`/ad`, `/ad.json`) and the creative stylesheet, about half their size. Their bodies
# hold no secret an attacker could guess byte by byte through the length (BREACH): no cookie,
# no CSRF token; the click links are signed, not secret. zlib with a 4 KiB window and a small
# memory level: an ad's few KB compress as well as with the defaults, about 3 times faster
# (~17 us for 2 KB here).
GZIP_FROM = 256
_GZIP_LEVEL, _GZIP_WBITS, _GZIP_MEMLEVEL = 6, 16 + 12, 5


def accepts_gzip(request: web.Request) -> bool:
    """Whether `Accept-Encoding` takes gzip (`gzip`, `x-gzip` or `*`, not with `q=0`)."""
    for part in request.headers.get("Accept-Encoding", "").lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() not in ("gzip", "x-gzip", "*"):
            continue
        name, _, value = params.partition("=")
        if name.strip() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def gzipped(request: web.Request, response: web.Response) -> web.Response:
    """`response` with its body gzip-compressed if the client takes gzip and it is long
    enough; a cacheable answer says `Vary: Accept-Encoding` (a `no-store` one needs not)."""
    if response.headers.get("Cache-Control") != "no-store":
        response.headers.add("Vary", "Accept-Encoding")
    body = response.body
    if not isinstance(body, bytes) or len(body) < GZIP_FROM or not accepts_gzip(request):
        return response
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS, _GZIP_MEMLEVEL)
    response.body = compressor.compress(body) + compressor.flush()
    response.headers["Content-Encoding"] = "gzip"
    return response


# The creative stylesheet's address names its content: cached for a year, never revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
# An address naming another version (a creative from a Kaeru being upgraded beside this one):
# today's stylesheet, kept only briefly.
SHORT_LIVED = "public, max-age=300"


def stylesheet(request: web.Request, sheet: Stylesheet, *, current: bool) -> web.Response:
    """The stylesheet, or 304 to a client that has it (either encoding: the compressed one's
    ETag is the plain one's with `-gzip`, so that caches never mistake one for the other)."""
    cache = IMMUTABLE if current else SHORT_LIVED
    headers = {"Cache-Control": cache, "ETag": sheet.etag, "X-Content-Type-Options": "nosniff"}
    if sheet.etag.strip('"') in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={**headers, "Vary": "Accept-Encoding"})
    response = web.Response(body=sheet.body, content_type="text/css", charset="utf-8")
    response.headers.update(headers)
    response = gzipped(request, response)
    if response.headers.get("Content-Encoding") == "gzip":
        response.headers["ETag"] = sheet.etag[:-1] + '-gzip"'
    return response
