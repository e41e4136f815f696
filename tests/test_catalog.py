"""Product feeds: three formats, per-row validation with reasons."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from adserver.core.product import Product
from adserver.feeds.validation import FeedError, parse_feed, parse_product
from tests.conftest import product_row


def test_json_array_ndjson_and_csv_give_the_same_products() -> None:
    rows = [product_row("a"), product_row("b", price="5 USD", currency="")]
    as_json = orjson.dumps(rows)
    as_ndjson = b"\n".join(orjson.dumps(r) for r in rows)
    header = ",".join(rows[0])
    as_csv = "\n".join([header, *(",".join(r[k] for k in rows[0]) for r in rows)]).encode()
    results = [parse_feed(body) for body in (as_json, as_ndjson, as_csv)]
    for result in results:
        assert result.rejected == []
        assert [p.id for p in result.accepted] == ["a", "b"]
        assert result.accepted[1].currency == "USD"
        assert result.accepted[1].price == Decimal(5)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"id": ""}, "id missing"),
        ({"id": "a,b"}, "id missing or invalid"),
        ({"title": ""}, "title missing"),
        ({"link": "javascript:alert(1)"}, "link missing or not an absolute http(s) URL"),
        ({"link": "/relative"}, "link missing"),
        ({"image_link": "ftp://x.example/i.png"}, "image_link missing"),
        ({"price": "free"}, "price missing"),
        ({"price": "-3"}, "price missing"),
        ({"currency": "XXQ"}, "unknown currency"),
        ({"currency": "", "price": "3"}, "currency missing"),
        ({"availability": "maybe"}, "availability must be"),
        ({"sale_price": "cheap"}, "sale_price"),
    ],
)
def test_invalid_rows_are_rejected_with_a_reason(override: dict[str, str], reason: str) -> None:
    result = parse_product(product_row("a", **override))
    assert isinstance(result, str)
    assert reason in result


def test_feed_reports_row_numbers_and_keeps_good_rows() -> None:
    rows = [product_row("a"), product_row("b", link="nope"), product_row("a")]
    result = parse_feed(orjson.dumps(rows))
    assert [p.id for p in result.accepted] == ["a"]
    assert [(r.row, r.id) for r in result.rejected] == [(2, "b"), (3, "a")]
    assert "duplicate" in result.rejected[1].reason


def test_google_style_fields_are_understood() -> None:
    product = parse_product(
        product_row(
            "a", price="20.00 EUR", sale_price="15.00 EUR", availability="out of stock", currency=""
        )
    )
    assert isinstance(product, Product)
    assert product.sale_price == Decimal("15.00")
    assert not product.in_stock
    assert product.price_text == "€15.00"
    assert product.regular_price_text == "€20.00"


def test_product_survives_storage_round_trip() -> None:
    product = parse_product(product_row("a", sale_price="9.5", brand="B", category="C"))
    assert isinstance(product, Product)
    assert Product.from_json(product.to_json()) == product


@pytest.mark.parametrize(
    "body",
    [b"[not json", b"\xff\xfe garbage", b"title,price\nx,1", b'"a string"'],
    ids=["broken-json", "not-utf8", "csv-without-id", "json-string"],
)
def test_unreadable_feeds_raise_a_clear_error(body: bytes) -> None:
    with pytest.raises(FeedError):
        parse_feed(body)


def test_ndjson_line_that_is_not_json_is_a_rejected_row() -> None:
    body = orjson.dumps(product_row("a")) + b"\n{broken\n"
    result = parse_feed(body)
    assert [p.id for p in result.accepted] == ["a"]
    assert result.rejected[0].row == 2 and "not valid JSON" in result.rejected[0].reason


def test_links_must_be_on_the_advertisers_domains_when_configured() -> None:
    domains = ("shop1.example",)
    ok = parse_product(product_row("a", image_link="https://cdn.shop1.example/a.jpg"), domains)
    assert isinstance(ok, Product)
    elsewhere = parse_product(product_row("b", link="https://evil.example/p/b"), domains)
    assert elsewhere == "link is not on the advertiser's domains (shop1.example)"
    lookalike = parse_product(
        product_row("c", image_link="https://shop1.example.evil.io/c"), domains
    )
    assert isinstance(lookalike, str) and lookalike.startswith("image_link is not on")
