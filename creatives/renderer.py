"""Ad creatives: one Jinja2 template per IAB size, listed in a manifest, checked at start-up,
and the stylesheet they share (`creative.css`, served at a path naming its content's hash so
browsers may keep it for a year).

Templates are written one tag per line; at load the renderer drops every line break and the
indentation after it from their source (never from the data rendered into them), so creatives
go out without needless whitespace.

Errors:
    CreativeError -- the template set is unusable; raised by `CreativeRenderer()` with every
        problem found, one per line, each naming the file at fault.
    UnknownSize(CreativeError) -- `render()` or `no_fill()` asked for a size the manifest lacks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
import jinja2.meta
from markupsafe import escape

from creatives.wording import DEFAULT_LANGUAGE, WORDINGS, wording_for

DEFAULT_TEMPLATE_DIR = Path(__file__).parent / "templates"
MANIFEST = "manifest.json"
STYLESHEET = "creative.css"
STYLESHEET_ROUTE = "/static/creative.{version}.css"
ALLOWED_CONTEXT = frozenset(
    {
        "products",
        "advertiser",
        "width",
        "height",
        "impression_url",
        "stylesheet_url",
        "lang",
        "wording",
        "offer",
    }
)
# Documents kept rendered, all but their links (per size, advertiser, locale, offer and
# products shown; the oldest goes first): ~2-5 KB each, so some 5-10 MB at most per process.
SKELETONS_KEPT = 2048
_BEACON = "i"
_LINE_BREAK = re.compile(r"\r?\n[ \t]*")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# What the creatives' CSP (adserver/http/responses.py) would block in the stylesheet anyway.
_CSS_FORBIDDEN = ("@import", "url(", "expression(")
_SIZE = re.compile(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})")
_NO_FILL = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<style>html,body{{margin:0;padding:0;width:{width}px;height:{height}px;"
    "overflow:hidden;background:transparent}}</style>\n"
    "</head>\n<body></body>\n</html>\n"
)


@dataclass(frozen=True, slots=True)
class CreativeProduct:
    title: str
    price_text: str
    image_url: str
    click_url: str
    brand: str = ""
    regular_price_text: str = ""


# What a kept document depends on: every field but the click link (filled in per request).
_SHOWN_FIELDS = operator.attrgetter(
    *(f.name for f in dataclasses.fields(CreativeProduct) if f.name != "click_url")
)


@dataclass(frozen=True, slots=True)
class CreativeOffer:
    """A campaign's offer as the creative shows it (escaped like everything else)."""

    text: str
    code: str = ""


@dataclass(frozen=True, slots=True)
class CreativeFormat:
    size: str
    width: int
    height: int
    max_products: int
    template: str


@dataclass(frozen=True, slots=True)
class Stylesheet:
    """The shared stylesheet, minified: `path` names its version (a hash of `body`), so a
    changed stylesheet is a new address and the old one may be cached forever."""

    path: str
    body: bytes
    etag: str


class CreativeError(Exception):
    pass


class UnknownSize(CreativeError):
    pass


_SAMPLE = CreativeProduct(
    title="Sample product",
    price_text="€1.00",
    image_url="https://example.com/p.png",
    click_url="https://example.com/c",
    brand="Brand",
    regular_price_text="€2.00",
)


class CreativeRenderer:
    def __init__(
        self, template_dir: Path | None = None, locales: Mapping[str, str] | None = None
    ) -> None:
        """`locales`: advertiser -> locale tag (`ja-JP`, KAERU_ADVERTISER_LOCALES); an
        advertiser not in it speaks English with en_US prices."""
        directory = template_dir if template_dir is not None else DEFAULT_TEMPLATE_DIR
        self._locales: Mapping[str, str] = MappingProxyType(dict(locales or {}))
        self._dir = directory
        self._loader = _OneLineLoader(directory)
        self._env = jinja2.Environment(
            loader=self._loader,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            cache_size=-1,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        problems: list[str] = []
        self._stylesheet = _read_stylesheet(directory / STYLESHEET, problems)
        formats = _read_manifest(directory / MANIFEST, problems)
        placeholders = self._compile_all(problems)
        self._templates: dict[str, jinja2.Template] = {}
        # Marks no catalog value can forge (a random nonce) where the request's links go.
        self._nonce = secrets.token_hex(8)
        self._holes = re.compile(f"\x00{self._nonce}:([0-9]+|{_BEACON})\x00")
        self._skeletons: OrderedDict[tuple[object, ...], list[str]] = OrderedDict()
        for fmt in formats:
            self._check_format(fmt, placeholders, problems)
        if problems:
            raise CreativeError(
                f"bad creative templates in {directory}:\n  " + "\n  ".join(problems)
            )
        self._formats: Mapping[str, CreativeFormat] = MappingProxyType(
            {fmt.size: fmt for fmt in formats}
        )

    @property
    def formats(self) -> Mapping[str, CreativeFormat]:
        return self._formats

    def sizes(self) -> list[str]:
        return list(self._formats)

    def locale_of(self, advertiser: str) -> str | None:
        """The advertiser's locale tag, or None: English wording, the feed's price texts."""
        return self._locales.get(advertiser)

    @property
    def stylesheet(self) -> Stylesheet | None:
        """The shared stylesheet, if the template directory has one (`creative.css`)."""
        return self._stylesheet

    def render(
        self,
        size: str,
        products: Sequence[CreativeProduct],
        *,
        advertiser: str,
        impression_url: str = "",
        base_url: str = "",
        locale: str = DEFAULT_LANGUAGE,
        offer: CreativeOffer | None = None,
    ) -> str:
        """The creative's document. `base_url`: Kaeru's origin, prefixed to the stylesheet's
        path (empty: a path, for a document served by Kaeru itself). `locale` (`ja-JP`): the
        document's language and its wording (`creatives.wording`; prices come formatted);
        `offer`: the campaign's offer, shown in every size.

        What only the request knows, the click links and the render beacon, is filled
        (escaped) into the document Jinja rendered once for the same size, advertiser and
        products (see `_skeleton`): the same products shown again cost a join, not a render."""
        fmt = self._format(size)
        if not products:
            raise ValueError("a creative needs at least one product")
        shown = products[: fmt.max_products]
        key = (
            size,
            advertiser,
            bool(impression_url),
            base_url,
            locale,
            offer,
            tuple(map(_SHOWN_FIELDS, shown)),
        )
        parts = self._skeletons.get(key)
        if parts is None:
            parts = self._skeleton(
                fmt, shown, advertiser, bool(impression_url), base_url, locale, offer
            )
            self._skeletons[key] = parts
            if len(self._skeletons) > SKELETONS_KEPT:
                self._skeletons.popitem(last=False)  # the oldest
        return _fill(parts, shown, impression_url)

    def _skeleton(
        self,
        fmt: CreativeFormat,
        shown: Sequence[CreativeProduct],
        advertiser: str,
        beacon: bool,
        base_url: str,
        locale: str = DEFAULT_LANGUAGE,
        offer: CreativeOffer | None = None,
    ) -> list[str]:
        """The document rendered with a mark in place of each click link and of the beacon,
        split there: text, hole name, text, ... (hole names: the product's index, `i`)."""
        sheet = self._stylesheet
        html = self._templates[fmt.template].render(
            products=[replace(p, click_url=self._mark(str(n))) for n, p in enumerate(shown)],
            advertiser=advertiser,
            width=fmt.width,
            height=fmt.height,
            impression_url=self._mark(_BEACON) if beacon else "",
            stylesheet_url=base_url + sheet.path if sheet else "",
            lang=locale,
            wording=wording_for(locale),
            offer=offer,
        )
        parts = self._holes.split(html)
        if self._nonce in "".join(parts[::2]):  # a template changed a mark it was given
            raise CreativeError(f"{fmt.template}: alters the click link or beacon URL")
        return parts

    def _mark(self, hole: str) -> str:
        return f"\x00{self._nonce}:{hole}\x00"

    def no_fill(self, size: str) -> str:
        fmt = self._format(size)
        return _NO_FILL.format(width=fmt.width, height=fmt.height)

    def _format(self, size: str) -> CreativeFormat:
        fmt = self._formats.get(size)
        if fmt is None:
            known = ", ".join(self._formats)
            raise UnknownSize(f"unknown creative size {size!r}; known sizes: {known}")
        return fmt

    def _compile_all(self, problems: list[str]) -> dict[str, frozenset[str]]:
        """Compile every template once; return each one's placeholders."""
        names = self._loader.list_templates()
        placeholders: dict[str, frozenset[str]] = {}
        for name in names:
            if not name.endswith(".html"):
                continue
            found = self._placeholders(name, set(names), problems)
            if found is not None:
                placeholders[name] = found
        return placeholders

    def _placeholders(
        self, name: str, names: set[str], problems: list[str]
    ) -> frozenset[str] | None:
        try:
            source, _, _ = self._loader.get_source(self._env, name)
            ast = self._env.parse(source, name)
            self._env.get_template(name)
        except UnicodeDecodeError:
            problems.append(f"{name}: not UTF-8 text")
            return None
        except jinja2.TemplateSyntaxError as error:
            problems.append(f"{name}: syntax error on line {error.lineno}: {error.message}")
            return None
        for ref in jinja2.meta.find_referenced_templates(ast):
            if ref is None:
                problems.append(f"{name}: refers to a template by a computed name")
            elif ref not in names:
                problems.append(f"{name}: refers to missing template {ref!r}")
        found = frozenset(jinja2.meta.find_undeclared_variables(ast) - set(self._env.globals))
        unknown = found - ALLOWED_CONTEXT
        if unknown:
            problems.append(
                f"{name}: unknown placeholder(s) {', '.join(sorted(unknown))};"
                f" allowed: {', '.join(sorted(ALLOWED_CONTEXT))}"
            )
        return found

    def _check_format(
        self, fmt: CreativeFormat, placeholders: Mapping[str, frozenset[str]], problems: list[str]
    ) -> None:
        if fmt.template not in placeholders:
            if not (self._dir / fmt.template).is_file():
                problems.append(f"{fmt.template}: template file not found")
            return
        if "products" not in placeholders[fmt.template]:
            problems.append(f"{fmt.template}: never uses 'products'")
            return
        template = self._env.get_template(fmt.template)
        samples, beacon = [_SAMPLE] * fmt.max_products, "https://example.com/i?a=1&b=2"
        sheet = self._stylesheet
        try:
            direct = template.render(
                products=samples,
                advertiser="Advertiser",
                width=fmt.width,
                height=fmt.height,
                impression_url=beacon,
                stylesheet_url=sheet.path if sheet else "",
                lang=DEFAULT_LANGUAGE,
                wording=wording_for(DEFAULT_LANGUAGE),
                offer=None,
            )
            self._templates[fmt.template] = template
            filled = _fill(self._skeleton(fmt, samples, "Advertiser", True, ""), samples, beacon)
        except (jinja2.TemplateError, TypeError, ValueError) as error:
            self._templates.pop(fmt.template, None)
            problems.append(f"{fmt.template}: fails to render a sample: {error}")
            return
        except CreativeError as error:
            filled = str(error)
        if filled != direct:  # the links must be rendered as given, escaped, nothing else
            self._templates.pop(fmt.template, None)
            problems.append(f"{fmt.template}: changes the click link or the beacon URL")
            return
        self._check_languages(fmt, samples, problems)

    def _check_languages(
        self, fmt: CreativeFormat, samples: Sequence[CreativeProduct], problems: list[str]
    ) -> None:
        """Every language's wording, with an offer, renders too (a size may leave the offer
        out: the shipped ones all show it, see tests/test_wording.py)."""
        offer = CreativeOffer("Sample offer", "CODE-1")
        for language in WORDINGS:
            try:
                self._skeleton(fmt, samples, "Advertiser", True, "", language, offer)
            except (jinja2.TemplateError, TypeError, ValueError, CreativeError) as error:
                problems.append(f"{fmt.template}: fails to render in {language!r}: {error}")
                return


def _fill(parts: list[str], shown: Sequence[CreativeProduct], impression_url: str) -> str:
    holes = {_BEACON: impression_url}
    holes.update((str(n), p.click_url) for n, p in enumerate(shown))
    return "".join(part if n % 2 == 0 else escape(holes[part]) for n, part in enumerate(parts))


class _OneLineLoader(jinja2.FileSystemLoader):
    """Templates without the line breaks (and the indentation after them) of their source."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return _LINE_BREAK.sub("", source), filename, uptodate


def minify_css(source: str) -> str:
    """Comments, line breaks and the spaces around punctuation removed (not inside strings:
    the stylesheet has none but font names, which keep their inner spaces)."""
    text = _CSS_COMMENT.sub("", source)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r" ?([{};:,>]) ?", r"\1", text)
    return text.replace(";}", "}").strip()


def _read_stylesheet(path: Path, problems: list[str]) -> Stylesheet | None:
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        problems.append(f"{STYLESHEET}: not UTF-8 text")
        return None
    except OSError as error:
        problems.append(f"{STYLESHEET}: cannot be read ({error.strerror})")
        return None
    body = minify_css(source)
    blocked = [word for word in _CSS_FORBIDDEN if word in body.lower()]
    if blocked:
        problems.append(f"{STYLESHEET}: uses {', '.join(blocked)}, which the creatives' CSP blocks")
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    return Stylesheet(STYLESHEET_ROUTE.format(version=version), body.encode(), f'"{version}"')


def _read_manifest(path: Path, problems: list[str]) -> list[CreativeFormat]:
    try:
        entries: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(f"{MANIFEST}: cannot be read ({error.strerror})")
        return []
    except ValueError as error:
        problems.append(f"{MANIFEST}: not valid JSON ({error})")
        return []
    if not isinstance(entries, list) or not entries:
        problems.append(f"{MANIFEST}: must be a non-empty list of formats")
        return []
    formats: list[CreativeFormat] = []
    for index, entry in enumerate(entries):
        fmt = _read_format(index, entry, problems)
        if fmt is None:
            continue
        if any(known.size == fmt.size for known in formats):
            problems.append(f"{fmt.template}: size {fmt.size} is listed twice in {MANIFEST}")
            continue
        formats.append(fmt)
    return formats


def _read_format(index: int, entry: Any, problems: list[str]) -> CreativeFormat | None:
    if not isinstance(entry, dict):
        problems.append(f"{MANIFEST}: entry {index} is not an object")
        return None
    template = entry.get("template")
    if not isinstance(template, str) or not _is_plain_file_name(template):
        problems.append(f"{MANIFEST}: entry {index} needs a template file name, got {template!r}")
        return None
    size, max_products = entry.get("size"), entry.get("max_products")
    before = len(problems)
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None:
        problems.append(f"{template}: size {size!r} is not WIDTHxHEIGHT (e.g. '300x250')")
    if type(max_products) is not int or max_products < 1:
        problems.append(f"{template}: max_products must be an integer >= 1, got {max_products!r}")
    if len(problems) > before or match is None or not isinstance(max_products, int):
        return None
    width, height = int(match[1]), int(match[2])
    return CreativeFormat(match[0], width, height, max_products, template)


def _is_plain_file_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")
