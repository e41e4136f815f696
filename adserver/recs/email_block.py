"""The e-mail-safe HTML block of a recommendation answer, as a pure function.

E-mail clients strip `<style>`, scripts and most CSS: the block is one table of cells with
inline styles only, images by absolute https URL (an image not served over https is left out,
its title still shown), every text and attribute escaped, each product linked through its
signed click link (channel `email`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

COLUMNS = 3  # products per row; a narrow client wraps the table as it can

_TABLE = (
    '<table role="presentation" cellpadding="0" cellspacing="0" border="0" width="100%" '
    'style="border-collapse:collapse;max-width:600px;font-family:Arial,Helvetica,sans-serif;">'
)
_CELL = 'style="padding:8px;vertical-align:top;text-align:center;width:{width}%;"'
_IMG = (
    '<img src="{src}" alt="{alt}" width="160" '
    'style="display:block;margin:0 auto;border:0;max-width:100%;height:auto;">'
)
_TITLE = 'style="color:#222222;font-size:14px;line-height:18px;text-decoration:none;"'
_PRICE = 'style="color:#222222;font-size:14px;font-weight:bold;margin:4px 0 0 0;"'
_REGULAR = 'style="color:#888888;font-size:12px;text-decoration:line-through;"'


def _attribute(value: object) -> str:
    return escape(str(value), quote=True)


def _cell(product: Mapping[str, Any], width: int) -> str:
    link = _attribute(product["click_url"])
    title = _attribute(product["title"] or product["id"])
    image_url = str(product.get("image_url") or "")
    image = (
        f'<a href="{link}">{_IMG.format(src=_attribute(image_url), alt=title)}</a>'
        if image_url.startswith("https://")
        else ""
    )
    regular = product.get("regular_price_text")
    price = _attribute(product.get("price_text") or "")
    if regular:
        price = f"<span {_REGULAR}>{_attribute(regular)}</span> {price}"
    return (
        f"<td {_CELL.format(width=width)}>{image}"
        f'<a href="{link}" {_TITLE}>{title}</a>'
        f"<p {_PRICE}>{price}</p></td>"
    )


def email_block(products: Sequence[Mapping[str, Any]]) -> str:
    """The products (as the recommendations answer lists them) as one HTML table; an empty
    string for no products (the e-mail service then leaves the block out)."""
    if not products:
        return ""
    width = 100 // min(COLUMNS, len(products))
    rows = []
    for start in range(0, len(products), COLUMNS):
        cells = "".join(_cell(p, width) for p in products[start : start + COLUMNS])
        rows.append(f"<tr>{cells}</tr>")
    return _TABLE + "".join(rows) + "</table>"
