import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from creatives.renderer import (
    DEFAULT_TEMPLATE_DIR,
    CreativeError,
    CreativeProduct,
    CreativeRenderer,
    UnknownSize,
)

RENDERER = CreativeRenderer()
SIZES = RENDERER.sizes()
XSS_PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "' onmouseover='x")


class ParsedCreative(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[self._open.index(tag) :]

    def handle_data(self, data: str) -> None:
        if not {"style", "title"} & set(self._open):
            self.text.append(data)

    def attrs_of(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def product(n: int = 1, **fields: str) -> CreativeProduct:
    values = {
        "title": f"Walnut chair no. {n}",
        "price_text": f"€{n}9.99",
        "image_url": f"https://shop.example/img/{n}.jpg",
        "click_url": f"https://ads.example/click?p={n}&sig=abc",
        "brand": f"Brand {n}",
    }
    return CreativeProduct(**(values | fields))


def products(count: int) -> list[CreativeProduct]:
    return [product(n) for n in range(1, count + 1)]


def write_template_dir(root: Path, manifest: object, files: dict[str, str]) -> Path:
    root.mkdir(exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for name, source in files.items():
        (root / name).write_text(source, encoding="utf-8")
    return root


GOOD_TEMPLATE = (
    "<!doctype html><div style='width:{{ width }}px;height:{{ height }}px'>"
    "{% for p in products %}<a href='{{ p.click_url }}'>{{ p.title }}</a>{% endfor %}"
    "{{ advertiser }}{{ impression_url }}</div>"
)


def test_manifest_offers_the_iab_sizes_in_order() -> None:
    assert {size: fmt.max_products for size, fmt in RENDERER.formats.items()} == {
        "300x250": 2,
        "728x90": 3,
        "160x600": 3,
        "320x50": 1,
        "300x600": 3,
        "320x100": 1,
        "970x250": 4,
    }
    assert SIZES == list(RENDERER.formats)
    assert (RENDERER.formats["728x90"].width, RENDERER.formats["728x90"].height) == (728, 90)


@pytest.mark.parametrize("size", SIZES)
def test_every_size_renders_a_full_document_with_each_product(size: str) -> None:
    fmt = RENDERER.formats[size]
    shown = products(fmt.max_products)

    html = RENDERER.render(size, shown, advertiser="Nordic Home")

    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    assert f"width:{fmt.width}px" in html and f"height:{fmt.height}px" in html
    assert "overflow:hidden" in html
    parsed = ParsedCreative(html)
    links = parsed.attrs_of("a")
    assert [link["href"] for link in links] == [p.click_url for p in shown]
    assert all(link["target"] == "_top" and link["rel"] == "noopener" for link in links)
    images = {img["src"]: img["alt"] for img in parsed.attrs_of("img")}
    text = " ".join(parsed.text)
    for p in shown:
        assert images[p.image_url] == p.title
        assert p.title in text and p.price_text in text
    assert "Ad" in [chunk.strip() for chunk in parsed.text]


def has_event_handler(parsed: ParsedCreative) -> bool:
    return any(key.startswith("on") for _, attrs in parsed.tags for key in attrs)


@pytest.mark.parametrize("size", SIZES)
def test_creatives_are_self_contained_without_scripts(size: str) -> None:
    """Issue 15: a creative links one thing, Kaeru's own shared stylesheet, itself free of
    anything fetched (no @import, no url())."""
    html = RENDERER.render(size, products(4), advertiser="Nordic Home")
    sheet = RENDERER.stylesheet
    assert sheet is not None

    links = ParsedCreative(html).attrs_of("link")
    assert links == [{"rel": "stylesheet", "href": sheet.path}]
    assert html.lower().count("<link") == 1
    for forbidden in ("<script", "@import", "url(", "javascript:"):
        assert forbidden not in html.lower(), forbidden
        assert forbidden not in sheet.body.decode().lower(), forbidden
    assert not has_event_handler(ParsedCreative(html))


def test_stylesheet_address_names_its_content_and_can_be_absolute() -> None:
    sheet = RENDERER.stylesheet
    assert sheet is not None
    version = hashlib.sha256(sheet.body).hexdigest()[:12]
    assert sheet.path == f"/static/creative.{version}.css" and sheet.etag == f'"{version}"'
    html = RENDERER.render("300x250", products(1), advertiser="A", base_url="https://ads.example")
    assert ParsedCreative(html).attrs_of("link")[0]["href"] == "https://ads.example" + sheet.path


def test_creatives_carry_no_needless_whitespace() -> None:
    for size in SIZES:
        html = RENDERER.render(size, products(2), advertiser="Nordic Home")
        assert "\n" not in html and "  " not in html and "> <" not in html, size
    sheet = RENDERER.stylesheet
    assert sheet is not None and b"\n" not in sheet.body and b"/*" not in sheet.body


def test_line_breaks_in_the_data_are_kept() -> None:
    """Only the templates' own line breaks go: a title's are the shop's (and HTML shows them
    as spaces anyway)."""
    html = RENDERER.render("300x250", [product(1, title="Two\nlines")], advertiser="A")
    assert "Two\nlines" in html


def test_stylesheet_that_fetches_anything_fails_at_start(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": 2, "template": "ok.html"}],
        {"ok.html": GOOD_TEMPLATE, "creative.css": "a{background:url(https://x.example/i)}"},
    )

    with pytest.raises(CreativeError, match=r"creative\.css: uses url\("):
        CreativeRenderer(directory)


def test_template_dir_without_stylesheet_links_none(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": 2, "template": "ok.html"}],
        {"ok.html": GOOD_TEMPLATE + "{{ stylesheet_url }}"},
    )
    renderer = CreativeRenderer(directory)

    assert renderer.stylesheet is None
    assert renderer.render("300x250", products(1), advertiser="A").endswith("A</div>")


@pytest.mark.parametrize("size", SIZES)
def test_products_beyond_the_format_limit_are_not_rendered(size: str) -> None:
    limit = RENDERER.formats[size].max_products

    html = RENDERER.render(size, products(limit + 2), advertiser="Nordic Home")

    assert len(ParsedCreative(html).attrs_of("a")) == limit
    assert f"Walnut chair no. {limit}<" in html
    assert f"Walnut chair no. {limit + 1}" not in html


def test_fewer_products_than_the_limit_render_just_those() -> None:
    html = RENDERER.render("970x250", products(2), advertiser="Nordic Home")

    assert len(ParsedCreative(html).attrs_of("a")) == 2


def test_brand_is_shown_when_present() -> None:
    html = RENDERER.render("300x250", [product(1, brand="Fjällgård")], advertiser="Nordic Home")

    assert "Fjällgård" in html


def test_sale_price_shows_the_regular_price_struck_through() -> None:
    on_sale = product(1, price_text="€14.99", regular_price_text="€24.99")

    html = RENDERER.render("300x250", [on_sale], advertiser="Nordic Home")

    assert "€14.99" in html
    assert "<s" in html and "€24.99</s>" in html


def test_regular_price_is_not_shown_when_not_on_sale() -> None:
    html = RENDERER.render("300x250", [product(1)], advertiser="Nordic Home")

    assert "<s " not in html and "<s>" not in html


def test_advertiser_name_is_shown_where_space_allows() -> None:
    for size in ("300x250", "728x90", "160x600", "300x600", "320x100", "970x250"):
        assert "Nordic Home" in RENDERER.render(size, products(1), advertiser="Nordic Home")


def test_impression_pixel_is_included_only_when_given() -> None:
    pixel_url = "https://ads.example/i?imp=1&sig=x"

    with_pixel = RENDERER.render("300x250", products(1), advertiser="A", impression_url=pixel_url)
    without = RENDERER.render("300x250", products(1), advertiser="A")

    pixels = [img for img in ParsedCreative(with_pixel).attrs_of("img") if img.get("width")]
    assert pixels == [
        {
            "src": pixel_url,
            "width": "1",
            "height": "1",
            "alt": "",
            "style": "position:absolute;left:-9999px",
        }
    ]
    assert not [img for img in ParsedCreative(without).attrs_of("img") if img.get("width")]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
@pytest.mark.parametrize("field", ["title", "brand", "price_text", "regular_price_text"])
def test_catalog_html_in_text_fields_renders_inert(field: str, payload: str) -> None:
    hostile = product(1, **{field: payload})

    for size in SIZES:
        html = RENDERER.render(size, [hostile], advertiser="Nordic Home")
        parsed = ParsedCreative(html)
        assert "<script" not in html
        assert not any(name == "script" for name, _ in parsed.tags)
        assert not has_event_handler(parsed)
        shows_field = not (field == "brand" and size == "320x50")
        assert (payload in " ".join(parsed.text)) == shows_field


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
@pytest.mark.parametrize("field", ["image_url", "click_url", "title"])
def test_quotes_in_attribute_values_cannot_break_out(field: str, payload: str) -> None:
    hostile = product(1, **{field: payload})

    for size in SIZES:
        html = RENDERER.render(size, [hostile], advertiser="A", impression_url=payload)
        parsed = ParsedCreative(html)
        assert "<script" not in html
        assert not has_event_handler(parsed)
        link = parsed.attrs_of("a")[0]
        image = parsed.attrs_of("img")[0]
        assert (link["href"], image["src"], image["alt"]) == (
            hostile.click_url,
            hostile.image_url,
            hostile.title,
        )
        assert parsed.attrs_of("img")[-1]["src"] == payload


def test_advertiser_name_renders_inert() -> None:
    for size in SIZES:
        html = RENDERER.render(size, products(1), advertiser=XSS_PAYLOADS[1])
        assert "<img src=x" not in html
        assert not has_event_handler(ParsedCreative(html))


def test_templates_never_mark_data_safe() -> None:
    for template in DEFAULT_TEMPLATE_DIR.glob("*.html"):
        source = template.read_text(encoding="utf-8").replace(" ", "")
        assert "|safe" not in source and "autoescapefalse" not in source, template.name


def test_unknown_size_is_rejected_listing_known_sizes() -> None:
    with pytest.raises(UnknownSize) as raised:
        RENDERER.render("468x60", products(1), advertiser="A")

    assert "468x60" in str(raised.value)
    assert all(size in str(raised.value) for size in SIZES)


def test_render_without_products_is_rejected() -> None:
    with pytest.raises(ValueError):
        RENDERER.render("300x250", [], advertiser="A")


@pytest.mark.parametrize("size", SIZES)
def test_no_fill_is_an_empty_transparent_document_of_the_size(size: str) -> None:
    fmt = RENDERER.formats[size]

    html = RENDERER.no_fill(size)

    assert html.lower().startswith("<!doctype html>")
    assert f"width:{fmt.width}px;height:{fmt.height}px" in html
    assert "background:transparent" in html
    parsed = ParsedCreative(html)
    assert not parsed.attrs_of("a") and not parsed.attrs_of("img")
    assert not "".join(parsed.text).strip()


def test_no_fill_for_unknown_size_is_rejected() -> None:
    with pytest.raises(UnknownSize, match="300x250"):
        RENDERER.no_fill("1x1")


def test_template_dir_with_shared_base_and_partials_loads(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "200x100", "max_products": 1, "template": "banner.html"}],
        {
            "_base.html": "<!doctype html>{% block body %}{% endblock %}{{ width }}",
            "_bits.html": "{% macro name(p) %}<b>{{ p.title }}</b>{% endmacro %}",
            "banner.html": '{% extends "_base.html" %}{% block body %}{% import "_bits.html"'
            " as m %}{% for p in products %}{{ m.name(p) }}{% endfor %}{% endblock %}",
        },
    )

    renderer = CreativeRenderer(directory)

    assert renderer.sizes() == ["200x100"]
    assert renderer.render("200x100", [product(1, title="<x>")], advertiser="A") == (
        "<!doctype html><b>&lt;x&gt;</b>200"
    )


def test_template_with_unknown_placeholder_fails_at_start(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": 2, "template": "leaky.html"}],
        {"leaky.html": GOOD_TEMPLATE + "{{ shopper_email }}"},
    )

    with pytest.raises(CreativeError, match=r"leaky\.html: unknown placeholder.*shopper_email"):
        CreativeRenderer(directory)


def test_missing_template_file_fails_at_start(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t", [{"size": "300x250", "max_products": 2, "template": "gone.html"}], {}
    )

    with pytest.raises(CreativeError, match=r"gone\.html: template file not found"):
        CreativeRenderer(directory)


@pytest.mark.parametrize("size", ["300X250", "300x", "0x250", "big", 300, None])
def test_bad_size_fails_at_start(tmp_path: Path, size: object) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": size, "max_products": 2, "template": "odd.html"}],
        {"odd.html": GOOD_TEMPLATE},
    )

    with pytest.raises(CreativeError, match=r"odd\.html: size .* is not WIDTHxHEIGHT"):
        CreativeRenderer(directory)


@pytest.mark.parametrize("max_products", [0, -1, "2", 1.5, True, None])
def test_bad_product_count_fails_at_start(tmp_path: Path, max_products: object) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": max_products, "template": "odd.html"}],
        {"odd.html": GOOD_TEMPLATE},
    )

    with pytest.raises(CreativeError, match=r"odd\.html: max_products must be an integer >= 1"):
        CreativeRenderer(directory)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("<p>{{ advertiser }}</p>", "never uses 'products'"),
        ("{% for p in products %}{{ p.title }", "syntax error on line 1"),
        ('{% extends "_nowhere.html" %}{{ products }}', "refers to missing template '_nowhere"),
        ("{% for p in products %}{{ p.titel }}{% endfor %}", "fails to render a sample"),
    ],
)
def test_broken_template_fails_at_start(tmp_path: Path, source: str, problem: str) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": 2, "template": "broken.html"}],
        {"broken.html": source},
    )

    with pytest.raises(CreativeError) as raised:
        CreativeRenderer(directory)

    assert f"broken.html: {problem}" in str(raised.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [
            {"size": "300x250", "max_products": 2, "template": "gone.html"},
            {"size": "wide", "max_products": 0, "template": "odd.html"},
            {"size": "728x90", "max_products": 3, "template": "leaky.html"},
            {"size": "728x90", "max_products": 3, "template": "again.html"},
        ],
        {
            "odd.html": GOOD_TEMPLATE,
            "leaky.html": GOOD_TEMPLATE + "{{ secret }}",
            "again.html": GOOD_TEMPLATE,
            "_partial.html": "{{ cookie }}",
        },
    )

    with pytest.raises(CreativeError) as raised:
        CreativeRenderer(directory)

    message = str(raised.value)
    assert "gone.html: template file not found" in message
    assert "odd.html: size 'wide' is not WIDTHxHEIGHT" in message
    assert "odd.html: max_products must be an integer >= 1" in message
    assert "leaky.html: unknown placeholder(s) secret" in message
    assert "again.html: size 728x90 is listed twice" in message
    assert "_partial.html: unknown placeholder(s) cookie" in message


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("not json", "manifest.json: not valid JSON"),
        ({"size": "300x250"}, "manifest.json: must be a non-empty list"),
        ([], "manifest.json: must be a non-empty list"),
        (["300x250"], "manifest.json: entry 0 is not an object"),
        ([{"size": "300x250", "max_products": 1}], "manifest.json: entry 0 needs a template"),
        (
            [{"size": "300x250", "max_products": 1, "template": "../x.html"}],
            "manifest.json: entry 0 needs a template",
        ),
    ],
)
def test_malformed_manifest_fails_at_start(tmp_path: Path, manifest: object, problem: str) -> None:
    directory = write_template_dir(tmp_path / "t", manifest, {"x.html": GOOD_TEMPLATE})
    if manifest == "not json":
        (directory / "manifest.json").write_text("[{", encoding="utf-8")

    with pytest.raises(CreativeError, match=problem):
        CreativeRenderer(directory)


def test_missing_manifest_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(CreativeError, match="manifest.json: cannot be read"):
        CreativeRenderer(tmp_path)


def test_the_same_products_again_get_their_own_links() -> None:
    """The document is kept rendered per size, advertiser and products; the click links and
    the beacon are the request's own each time."""
    first = RENDERER.render("728x90", products(2), advertiser="A", impression_url="/i/one")
    again = [product(n, click_url=f"https://ads.example/c/other-{n}&x") for n in (1, 2)]
    second = RENDERER.render("728x90", again, advertiser="A", impression_url="/i/two")

    links = [a["href"] for a in ParsedCreative(second).attrs_of("a")]
    assert links == [p.click_url for p in again]
    assert (
        "other-1&amp;x" in second and ParsedCreative(second).attrs_of("img")[-1]["src"] == "/i/two"
    )
    assert ParsedCreative(first).attrs_of("img")[-1]["src"] == "/i/one"
    renamed = RENDERER.render("728x90", [product(1, title="Oak stool"), again[1]], advertiser="A")
    assert "Oak stool" in renamed and "Walnut chair no. 1" not in renamed


def test_a_template_that_changes_the_links_fails_at_start(tmp_path: Path) -> None:
    directory = write_template_dir(
        tmp_path / "t",
        [{"size": "300x250", "max_products": 1, "template": "shout.html"}],
        {"shout.html": GOOD_TEMPLATE.replace("p.click_url", "p.click_url|upper")},
    )

    with pytest.raises(CreativeError, match=r"shout\.html: changes the click link"):
        CreativeRenderer(directory)
