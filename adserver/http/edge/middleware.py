"""The request as the client sent it: behind trusted proxies, every handler sees the client's
scheme, host and address (`request.scheme`, `.host`, `.remote`, `.secure`), decided once here."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from adserver.http.app_keys import METRICS, SETTINGS
from adserver.http.edge.forwarding import ForwardedHeaders, TrustedProxies
from adserver.http.middleware import route_name


def forwarded_headers(request: web.Request) -> ForwardedHeaders:
    headers = request.headers
    has_forwarded = hdrs.FORWARDED in headers
    return ForwardedHeaders(
        x_for=",".join(headers.getall(hdrs.X_FORWARDED_FOR, ())),
        x_proto=",".join(headers.getall(hdrs.X_FORWARDED_PROTO, ())),
        x_host=",".join(headers.getall(hdrs.X_FORWARDED_HOST, ())),
        forwarded=request.forwarded if has_forwarded else (),  # aiohttp's RFC 7239 parser
    )


def believe_trusted_proxies(proxies: TrustedProxies) -> Middleware:
    """A middleware that hands on a clone of the request as the trusted proxies saw it."""

    @web.middleware
    async def believe(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not proxies.trusts(request.remote):
            return await handler(request)  # forwarded headers from anyone else: ignored
        view = proxies.resolve(request.remote, forwarded_headers(request))
        if view is None:
            return await handler(request)
        return await handler(request.clone(**view.overrides()))  # type: ignore[arg-type]

    return believe


def limit_targets(longest: int, long_ok: frozenset[str]) -> Middleware:
    """aiohttp's line limit is raised for the pixel's sake (adserver.http.edge.MAX_REQUEST_LINE);
    every other route refuses a target over `longest` bytes as aiohttp did (414, counted)."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(request.raw_path) > longest and route_name(request) not in long_ok:
            request.app[METRICS].malformed_requests.labels("target_too_long").inc()
            return web.Response(status=414, text="request target too long")
        return await handler(request)

    return limit


def public_base_url(request: web.Request) -> str:
    """Where browsers reach Kaeru, for absolute links: KAERU_PUBLIC_URL when set, else the
    scheme and host the client used (as believed above)."""
    return request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
