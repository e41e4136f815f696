"""Whether a tracking request comes from the advertiser's own pages, as far as can be known
(pure). With `KAERU_ADVERTISER_DOMAINS` set for an advertiser, its events are accepted only
from pages on those domains (or below them).

The page is the `Origin` header when the browser sends one (every `POST` from `tag.js` has
it; `null`, a sandboxed or opaque page, is not the shop's), else the `Referer`. A request with
neither (an `<img>` pixel under a `no-referrer` policy, a server) cannot be told apart and is
accepted: this stops other sites' pages from reporting events in a shopper's browser, not a
script that forges headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def from_own_pages(origin: str | None, referer: str | None, domains: Sequence[str]) -> bool:
    if not domains:
        return True
    page = origin.strip() if origin else (referer or "").strip()
    if not page:
        return True  # cannot be known
    try:
        parts = urlsplit(page)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False  # `null`, `file:`, garbage
    names = [domain.lstrip(".") for domain in domains]
    return any(host == name or host.endswith("." + name) for name in names)
