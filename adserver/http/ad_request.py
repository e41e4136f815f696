"""Pure parsing of a partner's ad request (`/ad`, `/ad.js`, `/ad.json` query strings)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from adserver.core.decision import Slot
from creatives.renderer import CreativeFormat

PUBLISHER = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
SLOT_NAME = re.compile(r"^[A-Za-z0-9._-]{0,64}\Z")


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
    return Slot(publisher, size, creative.max_products, name)
