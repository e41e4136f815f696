"""Context when nobody is known (issue 13 §5): ad tags pass the page's keywords (`kw=`) or
category (`cat=`); a shopper Kaeru does not know sees the shop's popular products matching them
(strategy `contextual`), else `popular`. Against the real app and Redis."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import (
    OPERATOR_TOKEN,
    SHOP,
    SHOP_TOKEN,
    counted,
    landing_of,
    learn_all,
    product_row,
    put_catalog,
)
from tests.test_edge_http import metric

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}

# Most viewed first: the popularity order every test below starts from.
CATALOG = [
    product_row("tee", title="Cotton T-Shirt", category="Apparel > Shirts", brand="Kaeru"),
    product_row("mug", title="Frog Mug", category="Home > Kitchen"),
    product_row("boot", title="Rain Boot", category="Apparel > Shoes > Boots"),
    product_row("runner", title="Trail Runner", category="Apparel > Shoes", brand="Hoppa"),
    product_row("sneaker", title="軽量 スニーカー", category="靴 > スニーカー"),
    product_row("kurta", title="लाल कुर्ता", category="कपड़े"),
    product_row(
        "sandal", title="Beach Sandal", category="Apparel > Shoes", availability="out_of_stock"
    ),
]
VIEWS = {"tee": 7, "mug": 6, "sandal": 5, "boot": 4, "runner": 3, "sneaker": 2, "kurta": 1}


async def shop_with_popularity(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    await put_catalog(client, CATALOG)
    for sku, times in VIEWS.items():
        for _ in range(times):
            response = await client.get("/px", params={"a": SHOP, "e": "view", "i": sku})
            assert response.status == 200
            client.session.cookie_jar.clear()  # each view another shopper
    await learn_all(client)
    return client


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    return await shop_with_popularity(client)


async def ad_json(client: TestClient[Any, Any], **params: str) -> dict[str, Any]:
    response = await client.get("/ad.json", params={"pub": "news1", "size": "728x90", **params})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    await counted(client)
    return body


def shown(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["id"], p["strategy"]) for p in body["products"]]


async def test_an_anonymous_shopper_on_a_shoe_page_sees_popular_shoes(
    shop: TestClient[Any, Any],
) -> None:
    body = await ad_json(shop, cat="Apparel > Shoes")
    # Below the category too (boots); never the sold-out sandal; most popular first.
    assert shown(body) == [("boot", "contextual"), ("runner", "contextual"), ("tee", "popular")]
    assert body["strategy"] == "contextual"


async def test_the_category_matches_whatever_the_case_and_spacing(
    shop: TestClient[Any, Any],
) -> None:
    body = await ad_json(shop, cat="apparel>SHOES>  boots")
    assert shown(body)[0] == ("boot", "contextual")
    assert ("runner", "contextual") not in shown(body)  # above the page's category


async def test_keywords_match_words_of_titles_categories_and_brands(
    shop: TestClient[Any, Any],
) -> None:
    assert shown(await ad_json(shop, kw="frog,kitchen"))[0] == ("mug", "contextual")
    assert shown(await ad_json(shop, kw="HOPPA"))[0] == ("runner", "contextual")
    # Punctuation and spaces split words; "T-Shirt" is the words "t" and "shirt".
    assert shown(await ad_json(shop, kw="summer shirt!"))[0] == ("tee", "contextual")


async def test_keywords_match_titles_in_other_scripts(shop: TestClient[Any, Any]) -> None:
    body = await ad_json(shop, kw="スニーカー")
    assert shown(body)[0] == ("sneaker", "contextual")
    # Full-width letters are the plain ones.
    assert shown(await ad_json(shop, kw="ＦＲＯＧ"))[0] == ("mug", "contextual")
    assert shown(await ad_json(shop, cat="靴"))[0] == ("sneaker", "contextual")
    # Devanagari: the vowel signs are part of the word.
    assert shown(await ad_json(shop, kw="कुर्ता"))[0] == ("kurta", "contextual")
    assert shown(await ad_json(shop, cat="कपड़े"))[0] == ("kurta", "contextual")


async def test_no_match_or_no_context_is_popular(shop: TestClient[Any, Any]) -> None:
    for params in ({"kw": "spaceship"}, {"cat": "Toys"}, {}, {"kw": "", "cat": ""}):
        body = await ad_json(shop, **params)
        assert shown(body)[:2] == [("tee", "popular"), ("mug", "popular")], params


async def test_a_known_shoppers_recent_views_still_win(shop: TestClient[Any, Any]) -> None:
    response = await shop.get("/px", params={"a": SHOP, "e": "view", "i": "mug"})
    assert response.status == 200
    body = await ad_json(shop, cat="Apparel > Shoes")
    assert shown(body)[:3] == [("mug", "recent"), ("boot", "contextual"), ("runner", "contextual")]


async def test_a_campaign_restricted_to_contextual_fills_only_on_matching_pages(
    shop: TestClient[Any, Any],
) -> None:
    document = {
        "name": "shoes",
        "what": {"strategies": ["contextual"]},
        "bid": {"type": "cpm", "amount": "1"},
    }
    response = await shop.put(
        f"/api/v1/advertisers/{SHOP}/campaigns/shoes", json=document, headers=AUTH
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["what"]["strategies"] == ["contextual"]
    await learn_all(shop)  # the market cache reads the new campaign
    body = await ad_json(shop, cat="Apparel > Shoes")
    assert shown(body) == [("boot", "contextual"), ("runner", "contextual")]
    assert body["campaign"] == "shoes"
    for params in ({"cat": "Toys"}, {}):
        response = await shop.get("/ad.json", params={"pub": "news1", "size": "728x90", **params})
        assert response.status == 204, params  # nothing matches: no fill
    # A click on a contextual product lands on it; the report by strategy shows both.
    click = urlsplit(body["products"][0]["click_url"])
    response = await shop.get(click.path, allow_redirects=False)
    assert response.status == 302
    assert landing_of(response.headers["Location"]) == "https://shop1.example/p/boot"
    await counted(shop)
    response = await shop.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"by": "strategy"}, headers=AUTH
    )
    assert response.status == 200
    rows = {row["strategy"]: row for row in (await response.json())["rows"]}
    assert rows["contextual"]["impressions"] >= 1 and rows["contextual"]["clicks"] == 1


async def test_an_unknown_strategy_is_still_refused(shop: TestClient[Any, Any]) -> None:
    document = {"name": "x", "what": {"strategies": ["contextal"]}}
    response = await shop.put(
        f"/api/v1/advertisers/{SHOP}/campaigns/x", json=document, headers=AUTH
    )
    assert response.status == 422
    assert "contextual" in await response.text()  # the known ones are listed


async def test_debug_explains_a_contextual_pick(shop: TestClient[Any, Any]) -> None:
    response = await shop.get(
        "/ad.json",
        params={
            "pub": "news1",
            "size": "728x90",
            "cat": "Apparel > Shoes",
            "kw": "frog",
            "debug": "1",
        },
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    note = next(c for c in body["explanation"]["campaigns"] if c["advertiser"] == SHOP)
    assert note["candidates"]["contextual"] == ["mug", "boot", "runner"]
    assert note["context"] == {
        "keywords": ["frog"],
        "category": "apparel > shoes",
        "matched": {"mug": "keyword", "boot": "category", "runner": "category"},
    }


async def test_the_iframe_and_the_script_carry_the_context(shop: TestClient[Any, Any]) -> None:
    query = {"pub": "news1", "size": "728x90", "kw": "rain boot", "cat": "Apparel > Shoes"}
    response = await shop.get("/ad.js", params=query)
    assert response.status == 200
    source = re.search(r"f\.src=(\"[^\"]*\")", await response.text())
    assert source is not None
    src = orjson.loads(source.group(1))
    framed = parse_qs(urlsplit(src).query)
    assert framed["kw"] == ["rain boot"] and framed["cat"] == ["Apparel > Shoes"]
    response = await shop.get(src.replace(str(shop.make_url("")).rstrip("/"), ""))
    assert response.status == 200
    html = await response.text()
    assert "Rain Boot" in html and "Cotton T-Shirt" not in html.split("Rain Boot")[0]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"kw": ",".join(f"w{n}" for n in range(11))}, "bad_keywords"),
        ({"kw": "x" * 41}, "bad_keywords"),
        ({"kw": "shoe\x00"}, "bad_keywords"),
        ({"kw": "a " * 600}, "bad_keywords"),
        ({"cat": "Apparel > " + "x" * 200}, "bad_category"),
        ({"cat": "Apparel > > Shoes"}, "bad_category"),
        ({"cat": ">"}, "bad_category"),
        ({"cat": "Apparel\n> Shoes"}, "bad_category"),
        ({"cat": " > ".join("abcdefghijk")}, "bad_category"),
    ],
)
async def test_bad_context_is_a_clear_400(
    client: TestClient[Any, Any], params: dict[str, str], reason: str
) -> None:
    await put_catalog(client, [product_row("sku-1")])
    query = {"pub": "news1", "size": "728x90", **params}
    for path in ("/ad.json", "/ad.js"):
        response = await client.get(path, params=query)
        assert response.status == 400, (path, params)
        message = (await response.json())["error"]
        assert ("kw" if reason == "bad_keywords" else "cat") in message
    response = await client.get("/ad", params=query)
    assert response.status == 400
    assert response.content_type == "text/html"
    assert "<body></body>" in await response.text()  # the framed 400: nothing in the page
    counted_400 = await metric(client, "kaeru_bad_requests_total", route="ad", reason=reason)
    assert counted_400 == 3


async def test_a_new_feed_moves_what_matches(shop: TestClient[Any, Any]) -> None:
    assert shown(await ad_json(shop, kw="frog"))[0] == ("mug", "contextual")
    renamed = [{**row, "title": "Toad Cup"} if row["id"] == "mug" else row for row in CATALOG]
    await put_catalog(shop, renamed)
    await learn_all(shop)  # the market cache reloads the catalog
    assert shown(await ad_json(shop, kw="frog"))[0] == ("tee", "popular")
    assert shown(await ad_json(shop, kw="toad"))[0] == ("mug", "contextual")
