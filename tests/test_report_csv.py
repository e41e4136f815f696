"""Report CSV exports are opened in spreadsheets: a cell an attacker chose (a publisher id on
any partner page, a campaign id) must not run as a formula. OWASP's rule: a cell starting with
`=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`; the numbers Kaeru computes stay
numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from adserver.delivery.reports import build_rows, neutralise_cell, to_csv
from tests.test_campaign_api import REPORT, ad, auth, put_campaign, view

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


async def export(client: TestClient[Any, Any], by: str) -> list[list[str]]:
    response = await client.get(REPORT, params={"by": by, "format": "csv"}, headers=auth())
    assert response.status == 200
    assert response.content_type == "text/csv"
    return cells(await response.text())


async def test_a_publisher_and_a_campaign_id_starting_with_minus_are_neutralised(
    stocked: TestClient[Any, Any],
) -> None:
    await put_campaign(stocked, "-1-cmd", what={"strategies": ["recent"]})
    await view(stocked, "sku-1")
    assert await ad(stocked, pub="-2-cmd") is not None
    publishers = await export(stocked, "publisher")
    assert publishers[0][:4] == ["publisher", "impressions", "clicks", "ctr"]
    assert publishers[1][:2] == ["'-2-cmd", "1"]
    campaigns = await export(stocked, "campaign")
    assert [row[0] for row in campaigns[1:]] == ["'-1-cmd"]


def test_every_formula_trigger_gets_a_quote_and_ordinary_cells_are_untouched() -> None:
    rows = [{"publisher": value, "impressions": 3, "revenue": "-1.50"} for value in HOSTILE]
    rows.append({"publisher": "news1", "impressions": 3, "revenue": "-1.50"})
    exported = cells(to_csv([{**_zeros(), **row} for row in rows], "publisher"))
    assert [row[0] for row in exported[1:]] == [f"'{value}" for value in HOSTILE] + ["news1"]
    assert {row[1] for row in exported[1:]} == {"3"}  # counts stay numbers
    assert {row[5] for row in exported[1:]} == {"-1.50"}  # and so does revenue


def test_stored_ids_that_predate_validation_are_neutralised_too() -> None:
    field = "imp\t=cmd|' /C calc'!A0\t@pub\trecent\t300x250"
    rows = build_rows({"20261201": {field: Decimal(2)}}, "campaign")
    assert cells(to_csv(rows, "campaign"))[1][0] == "'=cmd|' /C calc'!A0"
    rows = build_rows({"20261201": {field: Decimal(2)}}, "publisher")
    assert cells(to_csv(rows, "publisher"))[1][0] == "'@pub"


def test_neutralising_leaves_safe_text_alone() -> None:
    for safe in ("news1", "2026-12-01", "300x250", "a-b", "", "'quoted"):
        assert neutralise_cell(safe) == safe


def _zeros() -> dict[str, Any]:
    return {"clicks": 0, "ctr": 0.0, "conversions": 0, "revenue": "0.00", "rendered": 0}
