"""The demo shop's campaigns, as an advertiser would PUT them through the admin API: a
newcomers' campaign with an offer (shoppers without a purchase at the shop: `who.exclude`
`past_buyers`, evaluated per shopper on every ad), and an everyone campaign at a lower bid, so a
shopper who bought still gets ads, without the offer."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

WELCOME = "welcome"
EVERYONE = "everyone"
WELCOME_CODE = "WELCOME10"
# The offer's text in each demo shop's language (`DemoShop.name`).
WELCOME_TEXT: Mapping[str, str] = MappingProxyType(
    {"en": "10% off your first order", "ja": "初回のご注文が10%オフ"}
)


def demo_campaigns(shop_name: str) -> dict[str, dict[str, Any]]:
    """Campaign id -> admin API body for the demo shop `shop_name` ("en" or "ja")."""
    return {
        WELCOME: {
            "name": "Newcomers" if shop_name == "en" else "はじめてのお客さま",
            "who": {"exclude": ["past_buyers"]},
            "bid": {"type": "cpm", "amount": "3.00"},
            "offer": {"text": WELCOME_TEXT[shop_name], "code": WELCOME_CODE},
        },
        EVERYONE: {
            "name": "Everyone" if shop_name == "en" else "すべてのお客さま",
            "bid": {"type": "cpm", "amount": "1.00"},
        },
    }
