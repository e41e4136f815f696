"""Clicks, impressions and renders on their way to the ledger: how a `BufferedWriter` keeps
them on disk when Redis stays away through a shutdown (see `event_writer`)."""

from __future__ import annotations

from typing import Any

from adserver.buffering.buffered_writer import SpillCodec
from adserver.store import Placement
from adserver.store.ledger import Click, Shown


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
    )


def _encode_click(click: Click) -> dict[str, Any]:
    return {
        "uid": click.uid,
        "placement": _fields(click.placement),
        "sku": click.sku,
        "at": click.at,
        "token_id": click.token_id,
    }


def _decode_click(raw: dict[str, Any]) -> Click:
    return Click(
        _uid(raw["uid"]),
        _placement(raw["placement"]),
        str(raw["sku"]),
        float(raw["at"]),
        str(raw["token_id"]),
    )


SHOWN: SpillCodec[Shown] = SpillCodec("impressions", _encode_shown, _decode_shown, lambda s: s.uid)
CLICKS: SpillCodec[Click] = SpillCodec("clicks", _encode_click, _decode_click, lambda c: c.uid)
