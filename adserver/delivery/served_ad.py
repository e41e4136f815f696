"""Turn a decision into what the partner page receives: the creative HTML (rendered only when
asked for), the product list for JSON callers, signed click links and the rendered-impression
beacon."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from adserver.config.settings import EMAIL_PUBLISHER, ONSITE_PUBLISHER
from adserver.core.decision import Decision, Slot
from adserver.delivery.tokens import NONCE_BYTES, Signer, pack
from adserver.store import Placement
from adserver.store.ledger import new_impression_id
from creatives.renderer import CreativeProduct, CreativeRenderer

CLICK_PURPOSE = "click"
RENDER_PURPOSE = "render"
# What the render beacon of an impression not counted (past the client's cap, a bot's, a
# debug answer) carries instead of the impression id: its render is not counted either.
UNCOUNTED_IMPRESSION = "uncounted"


@dataclass(frozen=True, slots=True)
class ServedAd:
    decision: Decision
    slot: Slot
    products: list[dict[str, Any]]
    impression_url: str
    impression: str  # the id its render beacon and click links carry
    base_url: str  # Kaeru's origin, as the absolute links name it
    renderer: CreativeRenderer
    # What the creative shows, its click links as paths on Kaeru (`/c/TOKEN`).
    shown: tuple[CreativeProduct, ...]

    def html(self, *, absolute: bool = False) -> str:
        """The creative's document. Its links (clicks, render beacon, stylesheet) are paths,
        right for `/ad`, whose document is on Kaeru's origin; `absolute` for a document shown
        anywhere else (`/ad.json?html=1`)."""
        base = self.base_url if absolute else ""
        shown = [replace(p, click_url=base + p.click_url) for p in self.shown]
        return self.renderer.render(
            self.slot.size,
            shown,
            advertiser=self.decision.advertiser,
            impression_url=base + self.impression_url.removeprefix(self.base_url),
            base_url=base,
        )

    def as_json(self, *, with_html: bool = False) -> dict[str, Any]:
        """`/ad.json`'s answer; the creative's HTML (`html`, absolute links) only `with_html`."""
        answer = {
            "advertiser": self.decision.advertiser,
            "strategy": self.decision.strategy,
            "campaign": self.decision.campaign,
            "size": self.slot.size,
            "products": self.products,
            "impression_url": self.impression_url,
        }
        if with_html:
            answer["html"] = self.html(absolute=True)
        return answer


def placement_of(decision: Decision, slot: Slot, strategy: str | None = None) -> Placement:
    return Placement(
        decision.advertiser,
        decision.campaign,
        slot.publisher,
        strategy or decision.strategy,
        slot.size,
    )


def click_url(
    base_url: str,
    signer: Signer,
    decision: Decision,
    slot: Slot,
    index: int,
    impression: str = "",
) -> str:
    """A signed link carrying where the ad ran, where the click lands and which impression
    it belongs to (so the same ad served twice gives two links, each counted once)."""
    pick = decision.picks[index]
    placement = placement_of(decision, slot, pick.strategy)
    token = signer.sign(
        CLICK_PURPOSE,
        [
            placement.advertiser,
            placement.campaign,
            slot.publisher,
            pick.strategy,
            slot.size,
            pick.product.id,
            pick.product.link,
            *([impression] if impression else []),
        ],
    )
    return f"{base_url}/c/{token}"


# A recommendation on the shop's own pages (`/recs.json`) is clicked through the same signed
# links as an ad, its placement marking the channel: campaign `recs`, publisher `onsite`, the
# strategy the source that found the product, the size the placement (`product`, `cart`...).
# The same recommendations in the shop's e-mails (the admin API's `recommendations`): publisher
# `email`, so reports tell the two channels apart (ONSITE_PUBLISHER and EMAIL_PUBLISHER are
# reserved: no partner page may send them, see adserver.config.settings).
ONSITE_CAMPAIGN = "recs"


def onsite_placement(advertiser: str, placement: str, reason: str) -> Placement:
    return Placement(advertiser, ONSITE_CAMPAIGN, ONSITE_PUBLISHER, reason, placement)


def email_placement(advertiser: str, placement: str, reason: str) -> Placement:
    return Placement(advertiser, ONSITE_CAMPAIGN, EMAIL_PUBLISHER, reason, placement)


def onsite_click_url(
    base_url: str,
    signer: Signer,
    placement: Placement,
    sku: str,
    landing: str,
    impression: str,
) -> str:
    """`click_url` for a recommendation: counted and attributed like an ad click by `/c/`."""
    token = signer.sign(
        CLICK_PURPOSE,
        [
            *(placement.advertiser, placement.campaign, placement.publisher),
            *(placement.strategy, placement.size, sku, landing, impression),
        ],
    )
    return f"{base_url}/c/{token}"


def placement_from_token(fields: list[object]) -> tuple[Placement, list[str]] | None:
    """The placement and the remaining fields of a verified token, if well formed."""
    if len(fields) < 5 or not all(isinstance(f, str) for f in fields):
        return None
    text = [str(f) for f in fields]
    return Placement(text[0], text[1], text[2], text[3], text[4]), text[5:]


def build_ad(
    decision: Decision,
    slot: Slot,
    base_url: str,
    signer: Signer,
    renderer: CreativeRenderer,
    now: float | None = None,
    counted: bool = True,
) -> ServedAd:
    """The ad to answer; `counted` False for an impression not counted, whose render beacon
    then counts nothing (renders never outnumber counted impressions)."""
    placement = placement_of(decision, slot)
    impression = new_impression_id(time.time() if now is None else now)
    # The tokens of one ad (the beacon, a click link per product: the fields `click_url`
    # seals) share where the ad ran, packed once, and their issue time and nonces' draw.
    issued = int(time.time())
    nonces = secrets.token_bytes(NONCE_BYTES * (len(decision.picks) + 1))
    where = pack([placement.advertiser, placement.campaign, slot.publisher])
    beacon = signer.seal(
        RENDER_PURPOSE,
        where
        + pack([placement.strategy, slot.size, impression if counted else UNCOUNTED_IMPRESSION]),
        issued,
        nonces[:NONCE_BYTES],
    )
    impression_url = f"{base_url}/i/{beacon}"
    size, tail = pack([slot.size]), pack([impression] if impression else [])
    shown: list[CreativeProduct] = []
    products: list[dict[str, Any]] = []
    for index, pick in enumerate(decision.picks):
        product = pick.product
        at = NONCE_BYTES * (index + 1)
        fields = pack([pick.strategy]) + size + pack([product.id, product.link]) + tail
        token = signer.seal(CLICK_PURPOSE, where + fields, issued, nonces[at : at + NONCE_BYTES])
        url = f"{base_url}/c/{token}"
        shown.append(
            CreativeProduct(
                title=product.title,
                price_text=product.price_text,
                image_url=product.image_link,
                click_url=url.removeprefix(base_url),
                brand=product.brand,
                regular_price_text=product.regular_price_text,
            )
        )
        products.append(
            {
                "id": product.id,
                "title": product.title,
                "price": str(product.selling_price),
                "currency": product.currency,
                "price_text": product.price_text,
                "image_url": product.image_link,
                "click_url": url,
                "strategy": pick.strategy,
            }
        )
    return ServedAd(
        decision, slot, products, impression_url, impression, base_url, renderer, tuple(shown)
    )


# The widget's beacon once a recommendation list is in view: one sealed token per answer naming
# its placement, its impression id and how many products each source (strategy) put in it, so
# only what Kaeru answered can be counted, and once (see Ledger.record_shown).
RECS_VIEW_PURPOSE = "recs_view"
MAX_RECS_VIEWED = 64  # products one beacon may count: an answer has at most RecsQuery's n


def recs_view_url(
    base_url: str, signer: Signer, placements: list[Placement], impression: str
) -> str:
    """The beacon of an answer whose products have `placements` (one per product shown, all
    of the same advertiser, publisher and size), or "" for none."""
    if not placements:
        return ""
    first = placements[0]
    counts: dict[str, int] = {}
    for placement in placements:
        counts[placement.strategy] = counts.get(placement.strategy, 0) + 1
    fields: list[object] = [first.advertiser, first.campaign, first.publisher, first.size]
    fields.append(impression)
    for strategy, n in counts.items():
        fields += [strategy, n]
    return f"{base_url}/recs/i/{signer.sign(RECS_VIEW_PURPOSE, fields)}"


def recs_views_from_token(fields: list[object]) -> tuple[str, list[tuple[Placement, int]]] | None:
    """The impression id and (placement, products shown) of a verified beacon, if well formed
    (an impression not counted carries UNCOUNTED_IMPRESSION)."""
    if len(fields) < 7 or len(fields) % 2 == 0:
        return None
    head, pairs = fields[:5], fields[5:]
    if not all(isinstance(f, str) for f in head):
        return None
    advertiser, campaign, publisher, size, impression = (str(f) for f in head)
    views: list[tuple[Placement, int]] = []
    for strategy, n in zip(pairs[::2], pairs[1::2], strict=True):
        if not isinstance(strategy, str) or type(n) is not int or not 0 < n <= MAX_RECS_VIEWED:
            return None
        views.append((Placement(advertiser, campaign, publisher, strategy, size), n))
    return impression, views
