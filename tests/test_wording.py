"""The creatives' wording per language, the document's language, and what the kept rendered
creatives depend on (locale and offer included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adserver.config.settings import CREATIVE_LANGUAGES
from creatives.renderer import CreativeError, CreativeOffer, CreativeProduct, CreativeRenderer
from creatives.wording import WORDINGS, wording_for

RENDERER = CreativeRenderer()
HOSTILE = CreativeOffer("<script>alert(1)</script> \"50%\" off & 'more'", "EVIL-1")
PRODUCT = CreativeProduct(
    title="北欧デザインのウールブランケット（ライトグレー）",
    price_text="￥12,800",
    image_url="https://shop.example/p.png",
    click_url="https://ads.example/c/1",
    brand="ノルド",
    regular_price_text="￥15,800",
)


def render(size: str, locale: str = "en", offer: CreativeOffer | None = None) -> str:
    return RENDERER.render(size, [PRODUCT] * 4, advertiser="Shop", locale=locale, offer=offer)


def test_every_language_the_settings_accept_has_wording() -> None:
    assert set(WORDINGS) == set(CREATIVE_LANGUAGES)


def test_labels_fit_in_unquoted_attributes() -> None:
    for wording in WORDINGS.values():
        for word in (wording.ad, wording.ad_title, wording.sale):
            assert not re.search(r"[\s\"'=<>`]", word), word


def test_a_locale_picks_its_language_and_english_is_the_fallback() -> None:
    assert wording_for("ja-JP").ad == "広告"
    assert wording_for("de-AT").ad == "Anzeige"
    assert wording_for("pt-BR") is WORDINGS["en"]


@pytest.mark.parametrize("size", RENDERER.sizes())
def test_a_japanese_creative_speaks_japanese_in_every_size(size: str) -> None:
    html = render(size, "ja-JP")
    assert "<html lang=ja-JP>" in html
    assert ">広告</span>" in html
    assert "Shop now" not in html and ">Ad<" not in html
    assert "￥12,800" in html


@pytest.mark.parametrize("size", RENDERER.sizes())
def test_the_offer_is_shown_escaped_in_every_size(size: str) -> None:
    html = render(size, "de-DE", HOSTILE)
    assert "<script>" not in html and '"50%"' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;50%&#34; off &amp; &#39;more&#39;" in html
    assert "Code:<b>EVIL-1</b>" in html
    assert ">Anzeige</span>" in html


def test_no_offer_no_strip() -> None:
    assert "class=o" not in render("300x250")
    assert "class=oc" not in render("300x250", offer=CreativeOffer("Free shipping"))


def test_kept_creatives_differ_by_locale_and_offer() -> None:
    renderer = CreativeRenderer()
    one = renderer.render("300x250", [PRODUCT], advertiser="Shop", offer=CreativeOffer("A"))
    two = renderer.render("300x250", [PRODUCT], advertiser="Shop", offer=CreativeOffer("B"))
    three = renderer.render("300x250", [PRODUCT], advertiser="Shop", locale="fr-FR")
    plain = renderer.render("300x250", [PRODUCT], advertiser="Shop")
    assert ">A</span>" in one and ">B</span>" in two and ">A</span>" not in two
    assert ">Pub</span>" in three and ">Ad</span>" in plain


def test_a_template_failing_with_an_offer_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        '[{"size": "300x250", "max_products": 1, "template": "t.html"}]'
    )
    (tmp_path / "t.html").write_text(
        "{% for p in products %}<a href='{{ p.click_url }}'>{{ p.title }}</a>{% endfor %}"
        "{% if offer %}{{ offer.colour }}{% endif %}"
    )
    with pytest.raises(CreativeError, match=r"t\.html: fails to render in 'en'"):
        CreativeRenderer(tmp_path)
