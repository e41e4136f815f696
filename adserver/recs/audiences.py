"""Who belongs to an e-mail flow's audience, as pure functions over a shopper's history.

Kaeru keeps only keyed hashes of e-mails, so it cannot list an audience by the SHA-256 the
shop's e-mail service knows; the service asks, per hashed e-mail it already has, whether its
shopper is a member (see the README's "Recommendations in the shop's e-mails").

- `browse_abandoners`: viewed products since `since`, has no cart, and bought none of them
  (the items: those products, newest first);
- `cart_abandoners`: added to a cart since `since` and bought nothing since (the cart's
  `cart_since` is cleared by a purchase; the items: the cart, newest first).
"""

from __future__ import annotations

from dataclasses import dataclass

from adserver.core.shopper import AdvertiserHistory

AUDIENCES = ("browse_abandoners", "cart_abandoners")


@dataclass(frozen=True, slots=True)
class Membership:
    items: tuple[str, ...]  # what they viewed or left in the cart, newest first
    since: float  # unix seconds: the latest view of the items, or the latest add to the cart


def membership(name: str, history: AdvertiserHistory | None, since: float) -> Membership | None:
    """The shopper's membership of audience `name` (one of AUDIENCES), or None."""
    if history is None:
        return None
    bought = history.purchased
    if name == "cart_abandoners":
        if history.cart_since is None or history.cart_since < since:
            return None
        items = tuple(sku for sku in history.cart if sku not in bought)
        return Membership(items, history.cart_since) if items else None
    if history.cart or history.cart_since is not None:
        return None
    timed = zip(history.viewed, history.view_times, strict=False)  # aligned; untimed: left out
    recent = [(sku, t) for sku, t in timed if t >= since and sku not in bought]
    items = tuple(dict.fromkeys(sku for sku, _ in recent))
    return Membership(items, max(t for _, t in recent)) if items else None
