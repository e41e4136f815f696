"""The `uid` cookie: Kaeru's own id for a browser, issued, refreshed and read back (only in a
form Kaeru could have issued). Whether a request's uid may be used at all is the gates'
question (`adserver.identity.gates`)."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping

from aiohttp import web

UID_COOKIE = "uid"
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


def is_secure_context(request: web.Request, public_url: str | None) -> bool:
    """HTTPS as the client sees it (the connection, a trusted proxy's forwarded scheme, or an
    https KAERU_PUBLIC_URL), or loopback (which browsers treat as secure, so `Secure` cookies
    work there)."""
    if (public_url or "").startswith("https:") or request.secure:
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
