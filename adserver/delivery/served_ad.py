"""Turn a decision into what the partner page receives: the creative HTML (rendered only when
asked for), the product list for JSON callers, signed click links and the rendered-impression
beacon."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, replace
from typing import Any

from adserver.config.settings import EMAIL_PUBLISHER, ONSITE_PUBLISHER
from adserver.core.decision import Decision, Slot
from adserver.core.product import prices_in
from adserver.delivery.tokens import Signer, b64encode, canonical_b64decode
from adserver.store import Placement
from adserver.store.ledger import new_impression_id
from creatives.renderer import CreativeOffer, CreativeProduct, CreativeRenderer
from creatives.wording import DEFAULT_LANGUAGE

CLICK_PURPOSE = "click"  # a link of its own (`/c/TOKEN`): recommendations, and ads until 2026-12
RENDER_PURPOSE = "render"  # an ad's beacon until 2026-12 (`/i/TOKEN`)
AD_PURPOSE = "ad"  # an ad's one token (`/i/TOKEN`, `/c/TOKEN/LINK`): see `build_ad`
AD_LINK_PURPOSE = "ad link"  # the key naming one link of an ad's token (`link_name`)
LINK_MAC_BYTES = 4
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
    # What the creative shows, its click links as paths on Kaeru (`/c/TOKEN/LINK`).
    shown: tuple[CreativeProduct, ...]
    offer: CreativeOffer | None = None  # the campaign's, when valid at the decision
    locale: str = DEFAULT_LANGUAGE  # the advertiser's (KAERU_ADVERTISER_LOCALES)

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
            locale=self.locale,
            offer=self.offer,
        )

    def as_json(self, *, with_html: bool = False) -> dict[str, Any]:
        """`/ad.json`'s answer; the creative's HTML (`html`, absolute links) only `with_html`."""
        answer: dict[str, Any] = {
            "advertiser": self.decision.advertiser,
            "strategy": self.decision.strategy,
            "campaign": self.decision.campaign,
            "size": self.slot.size,
            "products": self.products,
            "impression_url": self.impression_url,
        }
        if self.offer is not None:
            answer["offer"] = {"text": self.offer.text, "code": self.offer.code}
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
    """A link of its own (`/c/TOKEN`) for a recommendation: where it ran, where the click
    lands, its impression id; counted and attributed like an ad's click by `/c/`."""
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


# An ad's links share ONE sealed token (`AD_PURPOSE`): where the ad ran, its impression id,
# whether its render counts, and each product shown as (strategy, sku, landing). The render
# beacon is `/i/TOKEN`, product i's click link `/c/TOKEN/LINK`, LINK naming i with a MAC of
# the token and i (`link_name`): a link altered in any way is refused, and no link can name a
# product the ad did not show. The same token in every link compresses to a few bytes under
# gzip (an ad is ~2 KB, the window 4 KiB: see adserver.http.responses), where each link used
# to carry its own ~212 incompressible characters. Fields, in order:
#   advertiser, campaign, publisher, strategy, size, impression, counted (1/0),
#   then per product: strategy ("" when the ad's), sku, how many leading characters of the
#   landing are the previous product's landing's, the rest of the landing.
AD_HEAD_FIELDS = 7
AD_PRODUCT_FIELDS = 4


@dataclass(frozen=True, slots=True)
class SealedAd:
    """What an ad's verified token holds."""

    placement: Placement  # with the ad's strategy (the lead product's)
    impression: str
    counted: bool
    products: tuple[tuple[str, str, str], ...]  # (strategy, sku, landing) in the order shown

    def click(self, index: int) -> tuple[Placement, str, str] | None:
        """The placement, sku and landing of product `index`, None when out of range."""
        if not 0 <= index < len(self.products):
            return None
        strategy, sku, landing = self.products[index]
        return replace(self.placement, strategy=strategy), sku, landing


def ad_fields(
    placement: Placement, impression: str, counted: bool, picks: list[tuple[str, str, str]]
) -> list[object]:
    """The fields of an ad's token (see above); `picks` as (strategy, sku, landing)."""
    fields: list[object] = [
        *(placement.advertiser, placement.campaign, placement.publisher),
        *(placement.strategy, placement.size, impression, int(counted)),
    ]
    previous = ""
    for strategy, sku, landing in picks:
        common = _common_prefix(previous, landing)
        fields += ["" if strategy == placement.strategy else strategy, sku]
        fields += [common, landing[common:]]
        previous = landing
    return fields


def _common_prefix(previous: str, landing: str) -> int:
    """How many leading characters `landing` shares with `previous` (landings are ASCII once
    cleaned: the bytes compared as one integer, the first difference its highest set bit; a
    landing that is not ASCII shares nothing)."""
    size = min(len(previous), len(landing))
    if not size or not (previous.isascii() and landing.isascii()):
        return 0
    a = int.from_bytes(previous[:size].encode(), "big")
    b = int.from_bytes(landing[:size].encode(), "big")
    return size - ((a ^ b).bit_length() + 7) // 8


def sealed_ad(fields: list[object]) -> SealedAd | None:
    """The ad a verified `AD_PURPOSE` token's fields describe, if well formed."""
    head, rest = fields[:AD_HEAD_FIELDS], fields[AD_HEAD_FIELDS:]
    if len(head) != AD_HEAD_FIELDS or not rest or len(rest) % AD_PRODUCT_FIELDS:
        return None
    *text, counted = head
    if not all(type(f) is str for f in text) or counted not in (0, 1) or type(counted) is not int:
        return None
    advertiser, campaign, publisher, strategy, size, impression = (str(f) for f in text)
    products: list[tuple[str, str, str]] = []
    previous = ""
    for at in range(0, len(rest), AD_PRODUCT_FIELDS):
        own, sku, common, tail = rest[at : at + AD_PRODUCT_FIELDS]
        if type(own) is not str or type(sku) is not str or type(tail) is not str:
            return None
        if type(common) is not int or not 0 <= common <= len(previous):
            return None
        previous = previous[:common] + tail
        products.append((own or strategy, sku, previous))
    placement = Placement(advertiser, campaign, publisher, strategy, size)
    return SealedAd(placement, impression, bool(counted), tuple(products))


LINKS_PER_MAC = 8  # one HMAC-SHA256 names 8 links: LINK_MAC_BYTES each


def _link_macs(signer: Signer, token: str, block: int) -> bytes:
    """The MACs of links `block * LINKS_PER_MAC` onwards of `token`, one after the other."""
    return signer.mac(AD_LINK_PURPOSE, f"{token}/{block}".encode(), 32)


def link_names(signer: Signer, token: str, count: int) -> list[str]:
    """The LINK of `/c/TOKEN/LINK` for products 0..count-1 (count <= 256): base64url of the
    index byte and a MAC of the token and the index (7 characters)."""
    names: list[str] = []
    macs = b""
    for index in range(count):
        at = index % LINKS_PER_MAC * LINK_MAC_BYTES
        if at == 0:
            macs = _link_macs(signer, token, index // LINKS_PER_MAC)
        names.append(b64encode(bytes((index,)) + macs[at : at + LINK_MAC_BYTES]))
    return names


def link_name(signer: Signer, token: str, index: int) -> str:
    """The LINK of product `index` (see `link_names`)."""
    at = index % LINKS_PER_MAC * LINK_MAC_BYTES
    macs = _link_macs(signer, token, index // LINKS_PER_MAC)
    return b64encode(bytes((index,)) + macs[at : at + LINK_MAC_BYTES])


def link_index(signer: Signer, token: str, link: str) -> int | None:
    """The product index `link` names for `token` (a verified ad token), or None when it is
    not a name `link_names` gives (checked in constant time)."""
    data = canonical_b64decode(link) if len(link) < 16 else None
    if data is None or len(data) != 1 + LINK_MAC_BYTES:
        return None
    index = data[0]
    at = index % LINKS_PER_MAC * LINK_MAC_BYTES
    expected = _link_macs(signer, token, index // LINKS_PER_MAC)[at : at + LINK_MAC_BYTES]
    return index if hmac.compare_digest(data[1:], expected) else None


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
    stamp = time.time() if now is None else now
    impression = new_impression_id(stamp)
    picks = [(pick.strategy, pick.product.id, pick.product.link) for pick in decision.picks]
    token = signer.sign(AD_PURPOSE, ad_fields(placement, impression, counted, picks))
    impression_url = f"{base_url}/i/{token}"
    names = link_names(signer, token, len(decision.picks))
    locale = renderer.locale_of(decision.advertiser)
    shown: list[CreativeProduct] = []
    products: list[dict[str, Any]] = []
    for pick, name in zip(decision.picks, names, strict=True):
        product = pick.product
        path = f"/c/{token}/{name}"
        price_text, regular_price_text = prices_in(product, locale)
        shown.append(
            CreativeProduct(
                title=product.title,
                price_text=price_text,
                image_url=product.image_link,
                click_url=path,
                brand=product.brand,
                regular_price_text=regular_price_text,
            )
        )
        products.append(
            {
                "id": product.id,
                "title": product.title,
                "price": str(product.selling_price),
                "currency": product.currency,
                "price_text": price_text,
                "image_url": product.image_link,
                "click_url": base_url + path,
                "strategy": pick.strategy,
            }
        )
    offer = decision.offer
    return ServedAd(
        decision,
        slot,
        products,
        impression_url,
        impression,
        base_url,
        renderer,
        tuple(shown),
        CreativeOffer(offer.text, offer.code) if offer and offer.valid_at(stamp) else None,
        locale or DEFAULT_LANGUAGE,
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
