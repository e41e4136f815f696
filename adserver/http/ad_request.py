"""Pure parsing of a partner's ad request (`/ad`, `/ad.js`, `/ad.json` query strings)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from adserver.config.settings import RESERVED_PUBLISHERS
from adserver.core.context import NO_CONTEXT, PageContext, category_path, words
from adserver.core.decision import Slot
from creatives.renderer import CreativeFormat

PUBLISHER = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
SLOT_NAME = re.compile(r"^[A-Za-z0-9._-]{0,64}\Z")
MAX_KEYWORDS = 10
MAX_KEYWORD = 40  # characters of one keyword
MAX_KEYWORDS_TEXT = 1000  # characters of `kw=` as sent
MAX_CATEGORY = 200  # characters of `cat=` as sent
MAX_CATEGORY_LEVELS = 10
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class BadAdRequest:
    """A 400 answer: `reason` is a metric label, `message` and `details` go to the caller."""

    reason: str
    message: str
    details: dict[str, object] = field(default_factory=dict)


def parse_ad_request(
    query: Mapping[str, str],
    formats: Mapping[str, CreativeFormat],
    publishers: Collection[str] = (),
) -> Slot | BadAdRequest:
    """`publishers`: the registered publishers (KAERU_PUBLISHERS), if any, the only ones
    served."""
    publisher = query.get("pub", "")
    if not PUBLISHER.match(publisher):
        return BadAdRequest(
            "bad_publisher", "pub is required: 1-64 letters, digits, '.', '_' or '-'"
        )
    if publisher in RESERVED_PUBLISHERS:  # reports count these as Kaeru's own channels
        return BadAdRequest(
            "reserved_publisher", f"pub {publisher!r} is reserved for the shop's own channels"
        )
    if publishers and publisher not in publishers:
        return BadAdRequest("unknown_publisher", "pub is not a registered publisher")
    size = query.get("size", "")
    creative = formats.get(size)
    if creative is None:
        return BadAdRequest(
            "unknown_size",
            f"unknown size {size[:20]!r}; supported sizes: {', '.join(formats)}",
            {"sizes": list(formats)},
        )
    name = query.get("slot", "")
    if not SLOT_NAME.match(name):
        return BadAdRequest("bad_slot", "slot must be up to 64 letters, digits, '.', '_' or '-'")
    context = parse_context(query)
    if isinstance(context, BadAdRequest):
        return context
    return Slot(publisher, size, creative.max_products, name, context=context)


def parse_context(query: Mapping[str, str]) -> PageContext | BadAdRequest:
    """The page's keywords (`kw=`, comma- or space-separated: punctuation splits words) and
    category (`cat=`, a `>` path such as `Apparel > Shoes`), normalised (see
    `adserver.core.context`). Absent or empty: no context."""
    raw_keywords, raw_category = query.get("kw", ""), query.get("cat", "")
    if not raw_keywords and not raw_category:
        return NO_CONTEXT
    if len(raw_keywords) > MAX_KEYWORDS_TEXT or CONTROL.search(raw_keywords):
        return BadAdRequest(
            "bad_keywords", f"kw must be up to {MAX_KEYWORDS_TEXT} printable characters"
        )
    keywords = list(dict.fromkeys(words(raw_keywords)))
    if len(keywords) > MAX_KEYWORDS:
        return BadAdRequest("bad_keywords", f"kw may name up to {MAX_KEYWORDS} keywords")
    if any(len(keyword) > MAX_KEYWORD for keyword in keywords):
        return BadAdRequest(
            "bad_keywords", f"each keyword in kw must be up to {MAX_KEYWORD} characters"
        )
    if len(raw_category) > MAX_CATEGORY or CONTROL.search(raw_category):
        return BadAdRequest(
            "bad_category", f"cat must be up to {MAX_CATEGORY} printable characters"
        )
    category = category_path(raw_category)
    levels = raw_category.split(">")
    if raw_category and (len(category) != len(levels) or len(levels) > MAX_CATEGORY_LEVELS):
        return BadAdRequest(
            "bad_category",
            f"cat must be a category path such as 'Apparel > Shoes': up to "
            f"{MAX_CATEGORY_LEVELS} levels, each with a letter or digit",
        )
    return PageContext(frozenset(keywords), category)
