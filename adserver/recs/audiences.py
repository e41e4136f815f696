"""Who belongs to an e-mail flow's audience, as pure functions over a shopper's history.

The shop's e-mail service lists an audience (the hashed e-mails its shoppers identified with
at the shop, `adserver.store.email_audiences`) or asks per hashed e-mail (see the README's
"Recommendations in the shop's e-mails"); either way these decide who is a member.

- `browse_abandoners`: viewed products since `since`, has no cart, and bought none of them
  (the items: those products, newest first);
- `cart_abandoners`: added to a cart since `since` and bought nothing since (the cart's
  `cart_since` is cleared by a purchase; the items: the cart, newest first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adserver.core.shopper import AdvertiserHistory

AUDIENCES = ("browse_abandoners", "cart_abandoners")


@dataclass(frozen=True, slots=True)
class Membership:
    items: tuple[str, ...]  # what they viewed or left in the cart, newest first
    since: float  # unix seconds: the latest view of the items, or the latest add to the cart


def membership(
    name: str,
    history: AdvertiserHistory | None,
    since: float,
    sellable: Callable[[str], bool] = lambda sku: True,
) -> Membership | None:
    """The shopper's membership of audience `name` (one of AUDIENCES), or None. `sellable`
    says which products the shop still sells: the others are left out of the items (and a
    shopper left with none is no member)."""
    if history is None:
        return None
    bought = history.purchased
    if name == "cart_abandoners":
        if history.cart_since is None or history.cart_since < since:
            return None
        items = tuple(sku for sku in history.cart if sku not in bought and sellable(sku))
        return Membership(items, history.cart_since) if items else None
    if history.cart or history.cart_since is not None:
        return None
    timed = zip(history.viewed, history.view_times, strict=False)  # aligned; untimed: left out
    recent = [(sku, t) for sku, t in timed if t >= since and sku not in bought and sellable(sku)]
    items = tuple(dict.fromkeys(sku for sku, _ in recent))
    return Membership(items, max(t for _, t in recent)) if items else None
