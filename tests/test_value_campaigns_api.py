"""Customer value in campaigns over HTTP, against a real Redis: the admin API takes and
validates segments, due statuses and bid multipliers, and "why this ad" shows the factor."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN, SHOP, counted
from tests.test_campaign_api import CAMPAIGNS, auth, body, put_campaign, view

pytestmark = pytest.mark.cluster

DEBUG = {"pub": "news1", "size": "300x250", "debug": "1"}


async def test_value_conditions_are_stored_and_bad_ones_refused_with_every_problem(
    stocked: TestClient[Any, Any],
) -> None:
    good = body(
        who={"segments": ["champions", "loyal"], "due": ["due_now"]},
        what={"strategies": ["replenish", "popular"]},
        bid_multipliers={"champions": 2, "due_now": "1.5"},
    )
    response = await stocked.put(f"{CAMPAIGNS}/vip", json=good, headers=auth())
    assert response.status == 200, await response.text()
    kept = await (await stocked.get(f"{CAMPAIGNS}/vip", headers=auth())).json()
    assert kept["who"]["segments"] == ["champions", "loyal"] and kept["who"]["due"] == ["due_now"]
    assert kept["bid_multipliers"] == {"champions": "2", "due_now": "1.5"}
    assert kept["what"]["strategies"] == ["replenish", "popular"]
    bad = body(
        who={"segments": ["whales"], "due": "due_now"},
        what={"strategies": ["refill"]},
        bid_multipliers={"champions": 20, "vip": 1},
    )
    response = await stocked.put(f"{CAMPAIGNS}/bad", json=bad, headers=auth())
    assert response.status == 422
    problems = (await response.json())["problems"]
    for start in (
        "who.segments[0]: unknown segment 'whales'",
        "who.due: must be a list",
        "what.strategies[0]: unknown strategy 'refill'",
        "bid_multipliers.champions: must be a number from 0.1 to 10",
        "bid_multipliers.vip: unknown key",
    ):
        assert any(p.startswith(start) for p in problems), (start, problems)


async def test_why_this_ad_shows_the_bid_factor_and_a_segment_campaign_waiting_for_records(
    stocked: TestClient[Any, Any],
) -> None:
    await put_campaign(stocked, "flat", bid={"type": "cpm", "amount": "2"})
    await put_campaign(
        stocked, "buyers", bid={"type": "cpm", "amount": "1"}, bid_multipliers={"past_buyers": 3}
    )
    await put_campaign(stocked, "champs", who={"segments": ["champions"]})
    await view(stocked, "sku-1")
    purchase = {"a": SHOP, "e": "purchase", "i": "sku-2", "o": "o-1", "v": "19.90", "cur": "EUR"}
    await stocked.get("/px", params=purchase)
    await counted(stocked)
    response = await stocked.get("/ad.json", params=DEBUG, headers=auth(OPERATOR_TOKEN))
    assert response.status == 200, await response.text()
    explained = (await response.json())["explanation"]
    considered = {c["campaign"]: c for c in explained["campaigns"]}
    assert considered["buyers"]["bid_factor"] == 3.0
    assert considered["buyers"]["expected_value"] == pytest.approx(0.003)
    assert "bid_factor" not in considered["flat"]
    assert considered["champs"]["skipped"] == "no value segment known"
    assert explained["winner"]["campaign"] == "buyers"
