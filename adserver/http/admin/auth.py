"""Who may call the admin API: per-advertiser bearer tokens, one operator token.

An advertiser's token reaches only that advertiser's resources; the operator's reaches all.
"""

from __future__ import annotations

from aiohttp import web

from adserver.http.app_keys import SETTINGS


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authorize_advertiser(request: web.Request) -> str:
    """The advertiser named in the path, if the caller's token may act for it; else raises
    401 (no or unknown token), 403 (another advertiser's token) or 404 (no such advertiser)."""
    settings = request.app[SETTINGS]
    advertiser = request.match_info["advertiser"]
    token = bearer_token(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="kaeru"'}
    if token is None:
        raise web.HTTPUnauthorized(text="missing bearer token", headers=challenge)
    owner = settings.token_owner(token)
    if settings.is_operator(token):
        if advertiser not in settings.advertisers:
            raise web.HTTPNotFound(text=f"unknown advertiser {advertiser[:64]!r}")
        return advertiser
    if owner is None:
        raise web.HTTPUnauthorized(text="unknown token", headers=challenge)
    if owner != advertiser:
        raise web.HTTPForbidden(text="this token belongs to another advertiser")
    return advertiser


def authorize_operator(request: web.Request) -> None:
    token = bearer_token(request)
    if token is None:
        raise web.HTTPUnauthorized(
            text="missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="kaeru"'}
        )
    if not request.app[SETTINGS].is_operator(token):
        raise web.HTTPForbidden(text="this needs the operator token")
