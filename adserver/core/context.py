"""The page's context, pure: the keywords and category an ad tag may pass (`kw=`, `cat=`), and
what a product offers to match them, computed once per catalog load.

Both sides are normalised alike: NFKC (full-width letters and digits become plain), casefolded,
cut into words of letters and digits of any script (punctuation and spaces split words). A
category is a `>` path (`Apparel & Accessories > Shoes`), each level its words joined by one
space, so `apparel accessories > shoes` on either side is the same path.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from adserver.core.product import Product

JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner (Persian, Indic)
CATEGORY_SEPARATOR = ">"


def words(text: str) -> list[str]:
    """The words of `text`, normalised, in order (repeats kept): runs of letters and digits of
    any script, with the combining marks and joiners inside them (the vowel signs of Devanagari
    or Thai, which `\\w` alone would cut words at)."""
    found: list[str] = []
    start = -1
    normalised = unicodedata.normalize("NFKC", text).casefold()
    for at, char in enumerate(normalised):
        if char.isalnum() or (
            start >= 0 and (char in JOINERS or unicodedata.category(char)[0] == "M")
        ):
            if start < 0:
                start = at
        elif start >= 0:
            found.append(normalised[start:at])
            start = -1
    if start >= 0:
        found.append(normalised[start:])
    return found


def category_path(text: str) -> tuple[str, ...]:
    """`text` as a normalised category path; a level without words is left out."""
    levels = (" ".join(words(level)) for level in text.split(CATEGORY_SEPARATOR))
    return tuple(level for level in levels if level)


@dataclass(frozen=True, slots=True)
class PageContext:
    """What an ad request says about its page: normalised keywords and category path."""

    keywords: frozenset[str] = frozenset()
    category: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keywords or self.category)


NO_CONTEXT = PageContext()


@dataclass(frozen=True, slots=True)
class ProductContext:
    """What a product offers to match a page: the words of its title, category and brand, and
    its category path."""

    words: frozenset[str]
    category: tuple[str, ...]

    @classmethod
    def of(cls, product: Product) -> ProductContext:
        text = (
            f"{product.title} {product.category.replace(CATEGORY_SEPARATOR, ' ')} {product.brand}"
        )
        return cls(frozenset(words(text)), category_path(product.category))

    def matches(self, page: PageContext) -> str | None:
        """How the product matches the page: "category" (its category is the page's or lies
        below it), "keyword" (a keyword is one of its words), or None."""
        wanted = page.category
        if wanted and self.category[: len(wanted)] == wanted:
            return "category"
        if page.keywords and not page.keywords.isdisjoint(self.words):
            return "keyword"
        return None


def context_index(
    products: Mapping[str, Product], skus: Iterable[str], known: Mapping[str, ProductContext]
) -> dict[str, ProductContext]:
    """The `ProductContext` of each of `skus` that `products` holds, reusing `known` ones (the
    contextual strategy only ever matches popular products: a short list per shop)."""
    index: dict[str, ProductContext] = {}
    for sku in skus:
        product = products.get(sku)
        if product is not None:
            index[sku] = known.get(sku) or ProductContext.of(product)
    return index
