"""The e-mail-safe HTML block of the e-mail recommendations (adserver.recs.email_block), pure."""

from __future__ import annotations

from typing import Any

from adserver.recs.email_block import email_block


def product(sku: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": sku,
        "title": f"Product {sku}",
        "price_text": "€10.00",
        "regular_price_text": "",
        "image_url": f"https://s.example/{sku}.jpg",
        "click_url": f"https://ads.example/c/{sku}",
        **overrides,
    }


def test_no_products_is_an_empty_block() -> None:
    assert email_block([]) == ""


def test_three_products_a_row_with_inline_styles_only() -> None:
    html = email_block([product(f"s{n}") for n in range(1, 6)])
    assert html.count("<tr>") == 2 and html.count("<td ") == 5
    assert "<style" not in html and "class=" not in html and "<script" not in html
    assert 'alt="Product s1"' in html and 'href="https://ads.example/c/s1"' in html


def test_every_text_and_attribute_is_escaped() -> None:
    evil = product(
        'x"><script>',
        title='"><img src=x onerror=alert(1)>',
        image_url='https://s.example/a.jpg" onload="alert(1)',
        price_text="<b>1</b>",
        regular_price_text="<i>2</i>",
    )
    html = email_block([evil])
    assert "<script" not in html and "<img src=x" not in html and "<b>" not in html
    assert 'onload="' not in html and "<i>" not in html
    assert "&lt;b&gt;1&lt;/b&gt;" in html and "&lt;i&gt;2&lt;/i&gt;" in html


def test_an_image_not_on_https_is_left_out_and_a_missing_title_falls_back_to_the_id() -> None:
    html = email_block([product("s1", image_url="http://s.example/s1.jpg", title="")])
    assert "<img" not in html and "http://s.example" not in html
    assert ">s1</a>" in html


def test_a_sale_shows_the_regular_price_crossed_out() -> None:
    html = email_block([product("s1", price_text="€8.00", regular_price_text="€10.00")])
    assert "line-through" in html and "€10.00</span> €8.00" in html
