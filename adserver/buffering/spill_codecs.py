"""How each kind of buffered write looks in a spill file (when Redis stays away through a
shutdown, see `adserver.buffering.buffered_writer`): shopper events on their way to the store,
clicks, impressions and renders on their way to the ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adserver.buffering.backlog import SpillCodec
from adserver.core.shopper import EVENT_KINDS, LineItem, ShopperEvent
from adserver.store import Placement
from adserver.store.ledger import Click, Shown

Entry = tuple[str, ShopperEvent, float]  # uid, event, time


def _encode_event(entry: Entry) -> dict[str, Any]:
    uid, event, at = entry
    return {
        "uid": uid,
        "at": at,
        "advertiser": event.advertiser,
        "kind": event.kind,
        "items": list(event.items),
        "order": event.order,
        "revenue": None if event.revenue is None else str(event.revenue),
        "currency": event.currency,
        "attributable": event.attributable,
        "lines": [
            [line.sku, None if line.price is None else str(line.price), line.quantity]
            for line in event.lines
        ],
    }


def _decode_event(raw: dict[str, Any]) -> Entry:
    if raw["kind"] not in EVENT_KINDS:
        raise ValueError(f"not an event kind: {raw['kind']!r}")
    event = ShopperEvent(
        advertiser=str(raw["advertiser"]),
        kind=raw["kind"],
        items=tuple(str(sku) for sku in raw["items"]),
        order=raw["order"],
        revenue=None if raw["revenue"] is None else Decimal(raw["revenue"]),
        currency=raw["currency"],
        attributable=bool(raw.get("attributable", True)),  # absent in files of before
        lines=tuple(
            LineItem(str(sku), None if price is None else Decimal(price), int(quantity))
            for sku, price, quantity in raw["lines"]
        ),
    )
    return str(raw["uid"]), event, float(raw["at"])


EVENTS: SpillCodec[Entry] = SpillCodec(
    "events",
    _encode_event,
    _decode_event,
    lambda entry: entry[0],
    lambda entry: 1 + len(entry[1].items),
)


def _placement(raw: Any) -> Placement:
    advertiser, campaign, publisher, strategy, size = (str(field) for field in raw)
    return Placement(advertiser, campaign, publisher, strategy, size)


def _fields(placement: Placement) -> list[str]:
    return [
        placement.advertiser,
        placement.campaign,
        placement.publisher,
        placement.strategy,
        placement.size,
    ]


def _uid(raw: object) -> str | None:
    return None if raw is None else str(raw)


def _encode_shown(shown: Shown) -> dict[str, Any]:
    return {
        "uid": shown.uid,
        "placement": _fields(shown.placement),
        "skus": list(shown.skus),
        "at": shown.at,
        "rendered": shown.rendered,
        "impression": shown.impression,
        "counted": shown.counted,
        "viewed": shown.viewed,
    }


def _decode_shown(raw: dict[str, Any]) -> Shown:
    return Shown(
        _uid(raw["uid"]),
        _placement(raw["placement"]),
        tuple(str(sku) for sku in raw["skus"]),
        float(raw["at"]),
        rendered=bool(raw["rendered"]),
        impression=str(raw.get("impression", "")),  # absent in files written before
        counted=bool(raw.get("counted", True)),
        viewed=int(raw.get("viewed", 0)),
    )


def _encode_click(click: Click) -> dict[str, Any]:
    return {
        "uid": click.uid,
        "placement": _fields(click.placement),
        "sku": click.sku,
        "at": click.at,
        "token_id": click.token_id,
        "touch_only": click.touch_only,
    }


def _decode_click(raw: dict[str, Any]) -> Click:
    return Click(
        _uid(raw["uid"]),
        _placement(raw["placement"]),
        str(raw["sku"]),
        float(raw["at"]),
        str(raw["token_id"]),
        touch_only=bool(raw.get("touch_only", False)),  # absent in files written before
    )


SHOWN: SpillCodec[Shown] = SpillCodec("impressions", _encode_shown, _decode_shown, lambda s: s.uid)
CLICKS: SpillCodec[Click] = SpillCodec("clicks", _encode_click, _decode_click, lambda c: c.uid)
