"""Click ids: the sealed token `GET /c/TOKEN` appends to the landing URL (`kclid=…`).

A click id says which ad was clicked (its placement and product), by whom when Kaeru knew
(the uid, else empty) and when. The shop's page sends it back through the tag (the click
becomes that shopper's last touch, where Kaeru's own cookie was blocked) and the shop's
server may post a conversion with it (`click_id`) instead of a uid. It is sealed like the
click links (`adserver.delivery.tokens`, its own purpose), so nobody reads or alters it, and
it expires with the click window (KAERU_CLICK_WINDOW_DAYS).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from adserver.core.product import clean_url
from adserver.delivery.tokens import InvalidToken, Signer
from adserver.store import Placement

CLICK_ID_PURPOSE = "click_id"
MAX_CLICK_ID_LENGTH = 512  # a sealed click id is ~150 characters; anything longer is not one
CLICK_ID_TEXT = re.compile(r"^[A-Za-z0-9_-]{1,512}\Z")  # base64url, as Signer.sign spells it


@dataclass(frozen=True, slots=True)
class ClickId:
    """An opened click id: the click's placement and product, the clicking uid ("" when
    unknown) and the click time (seconds)."""

    placement: Placement
    sku: str
    uid: str
    at: float


def mint_click_id(signer: Signer, placement: Placement, sku: str, uid: str, now: float) -> str:
    fields: list[object] = [
        *(placement.advertiser, placement.campaign, placement.publisher),
        *(placement.strategy, placement.size, sku, uid, int(now * 1000)),
    ]
    return signer.sign(CLICK_ID_PURPOSE, fields, now=now)


def open_click_id(
    signer: Signer, text: str, window_seconds: int, now: float | None = None
) -> ClickId | InvalidToken:
    """The click a click id names, or why it is refused (forged, altered, expired)."""
    if not CLICK_ID_TEXT.match(text):
        return InvalidToken("malformed")
    fields = signer.verify(CLICK_ID_PURPOSE, text, window_seconds, now)
    if isinstance(fields, InvalidToken):
        return fields
    if len(fields) != 8 or not all(isinstance(f, str) for f in fields[:7]):
        return InvalidToken("malformed")
    at = fields[7]
    if not isinstance(at, int) or isinstance(at, bool):
        return InvalidToken("malformed")
    text_fields = [str(f) for f in fields[:7]]
    placement = Placement(*text_fields[:5])
    current = time.time() if now is None else now
    if current - at / 1000 > window_seconds:
        return InvalidToken("expired")
    return ClickId(placement, text_fields[5], text_fields[6], at / 1000)


def with_click_id(landing: str, param: str, click_id: str) -> str | None:
    """`landing` with `param=click_id` added to its query (before any fragment; a parameter of
    that name already there is replaced), or None when the result would not be a URL Kaeru
    redirects to (too long: see adserver.core.product.clean_url)."""
    parts = urlsplit(landing)
    kept = [p for p in parts.query.split("&") if p and unquote(p.split("=", 1)[0]) != param]
    query = "&".join([*kept, f"{param}={click_id}"])
    return clean_url(urlunsplit(parts._replace(query=query)))
