"""Which products of a tracking event the shop actually sells (pure).

Only products in the advertiser's catalog feed shopper profiles, popularity and neighbours:
anyone can send a view of any id, and each made-up id used to become a popularity member and
neighbour lists of its own. The catalog is the one each server process already holds in memory
(`MarketCache`), so this costs no Redis round trip.

- views and carts keep their known items; their unknown items *wait* (see `FeedGrace`): a
  shop's pages often name a new product a few minutes before the next feed brings it;
- lists keep their known items (they only say the shopper was there; unknown items are
  dropped);
- purchases are kept whole: the order counts (its value is checked elsewhere) and what was
  bought is only ever hidden from the shopper's ads; the learner skips the unknown items;
- with no catalog to check against (this process could not read it yet, Redis away at
  start-up; or the advertiser never loaded a feed) the event is kept whole: per shopper the
  profile is capped and expires, and the learner, which reads the catalogs itself, learns
  nothing that is not sold (so nothing at all before a first feed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from adserver.core.shopper import ShopperEvent

WAITING_KINDS = frozenset(("view", "cart"))
SCREENED_KINDS = frozenset(("view", "cart", "list"))


@dataclass(frozen=True, slots=True)
class Screened:
    kept: list[ShopperEvent] = field(default_factory=list)  # to store now
    waiting: list[ShopperEvent] = field(default_factory=list)  # only unknown items each
    dropped: int = 0  # unknown items that neither are kept nor wait


def screen(
    events: Sequence[ShopperEvent], catalog_of: Callable[[str], Collection[str] | None]
) -> Screened:
    """Split events into what the catalogs know and what they do not (yet)."""
    kept: list[ShopperEvent] = []
    waiting: list[ShopperEvent] = []
    dropped = 0
    for event in events:
        catalog = catalog_of(event.advertiser)
        if catalog is None or event.kind not in SCREENED_KINDS:
            kept.append(event)
            continue
        unknown = tuple(sku for sku in event.items if sku not in catalog)
        if not unknown:
            kept.append(event)
            continue
        known = tuple(sku for sku in event.items if sku in catalog)
        if known:
            kept.append(replace(event, items=known))
        if unknown and event.kind in WAITING_KINDS:
            waiting.append(replace(event, items=unknown))
        elif unknown:
            dropped += len(unknown)
    return Screened(kept, waiting, dropped)
