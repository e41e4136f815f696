"""Who is this browser: the first-party `uid` cookie, and the privacy signals that say
whether Kaeru may remember anything about it."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping

from aiohttp import web

from adserver.http.app_keys import SETTINGS
from adserver.identity.bots import MAX_USER_AGENT, is_crawler
from adserver.identity.consent import may_personalise

UID_COOKIE = "uid"
OPTOUT_COOKIE = "optout"
UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}\Z")
UID_MAX_AGE_SECONDS = 396 * 86400  # 13 months
LOOPBACK_HOSTS = frozenset(("localhost", "127.0.0.1", "::1"))


def new_uid() -> str:
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def read_uid(cookies: Mapping[str, str]) -> str | None:
    """The cookie's uid if it is one we could have issued; anything else is not trusted."""
    value = cookies.get(UID_COOKIE)
    return value if value is not None and UID_PATTERN.match(value) else None


def opted_out(request: web.Request) -> bool:
    """The shopper asked not to be tracked: the opt-out cookie, Global Privacy Control, or
    Do Not Track where the operator honours it (KAERU_HONOR_DNT, on by default)."""
    return (
        request.cookies.get(OPTOUT_COOKIE) == "1"
        or request.headers.get("Sec-GPC") == "1"
        or (request.app[SETTINGS].honor_dnt and request.headers.get("DNT") == "1")
    )


def is_bot(request: web.Request) -> bool:
    """A known crawler or automated client (two maintained lists and a few automation markers:
    `adserver/identity/bots.py`): it gets no personalised ads and its hits, impressions and
    clicks are not
    counted."""
    if not request.app[SETTINGS].filter_bots:
        return False
    return is_crawler(request.headers.get("User-Agent", "")[:MAX_USER_AGENT])


def consented(request: web.Request, gdpr: str | None, tc_string: str | None) -> bool:
    """IAB TCF v2.2: where GDPR applies (`gdpr=1`), Kaeru stores and personalises only with
    consent to purposes 1, 3 and 4 (and, when KAERU_TCF_VENDOR_ID is set, vendor consent and no
    publisher restriction taking one of those purposes from that vendor)."""
    return may_personalise(gdpr, tc_string, request.app[SETTINGS].tcf_vendor_id)


def is_secure_context(request: web.Request) -> bool:
    """HTTPS as the client sees it (the connection, a trusted proxy's forwarded scheme, or an
    https KAERU_PUBLIC_URL), or loopback (which browsers treat as secure, so `Secure` cookies
    work there)."""
    if request.secure or (request.app[SETTINGS].public_url or "").startswith("https:"):
        return True
    host = request.host  # raw header: request.url would choke on a hostile, non-IDNA Host
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return name.lower() in LOOPBACK_HOSTS


@functools.lru_cache(maxsize=64)
def _uid_cookie_attributes(secure: bool, domain: str | None) -> str:
    parts = [f"Max-Age={UID_MAX_AGE_SECONDS}", "Path=/"]
    if domain:
        parts.append(f"Domain={domain}")
    parts += ["Secure", "HttpOnly", "SameSite=None"] if secure else ["HttpOnly", "SameSite=Lax"]
    return "; ".join(parts)


def set_uid_cookie(
    response: web.StreamResponse, uid: str, *, secure: bool, domain: str | None
) -> None:
    """Issue or refresh the uid cookie. Over plain HTTP on a non-loopback host `Secure` cookies
    are dropped by browsers, so there it falls back to a first-party `SameSite=Lax` cookie.

    The header is written directly (uid is URL-safe base64, the domain a validated hostname):
    `StreamResponse.set_cookie` goes through `http.cookies.Morsel`, a measurable share of a
    pixel request."""
    header = f"{UID_COOKIE}={uid}; {_uid_cookie_attributes(secure, domain)}"
    response.headers.add("Set-Cookie", header)
