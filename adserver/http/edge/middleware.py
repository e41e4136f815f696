"""The request as the client sent it: behind trusted proxies, every handler sees the client's
scheme, host and address (`request.scheme`, `.host`, `.remote`, `.secure`), decided once here."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import hdrs, web

from adserver.http.app_keys import SETTINGS
from adserver.http.edge.forwarding import ForwardedHeaders, TrustedProxies


def forwarded_headers(request: web.Request) -> ForwardedHeaders:
    headers = request.headers
    has_forwarded = hdrs.FORWARDED in headers
    return ForwardedHeaders(
        x_for=",".join(headers.getall(hdrs.X_FORWARDED_FOR, ())),
        x_proto=",".join(headers.getall(hdrs.X_FORWARDED_PROTO, ())),
        x_host=",".join(headers.getall(hdrs.X_FORWARDED_HOST, ())),
        forwarded=request.forwarded if has_forwarded else (),  # aiohttp's RFC 7239 parser
    )


def as_trusted_proxies_saw_it(proxies: TrustedProxies) -> Callable[[web.Request], web.Request]:
    """The request as the trusted proxies saw it (a clone), or as it came: forwarded headers
    from anyone else are ignored. Applied by the one middleware (adserver.http.middleware)."""

    def view(request: web.Request) -> web.Request:
        if not proxies.trusts(request.remote):
            return request
        seen = proxies.resolve(request.remote, forwarded_headers(request))
        if seen is None:
            return request
        return request.clone(**seen.overrides())  # type: ignore[arg-type]

    return view


def public_base_url(request: web.Request) -> str:
    """Where browsers reach Kaeru, for absolute links: KAERU_PUBLIC_URL when set, else the
    scheme and host the client used (as believed above)."""
    return request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
