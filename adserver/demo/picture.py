"""Generated SVG product pictures for the demo shop: no image files to ship."""

import hashlib
from html import escape
from textwrap import wrap

_SIZE = 400
_SHAPES = {
    "triangle": '<polygon points="200,70 320,250 80,250" fill="{fg}"/>',
    "circle": '<circle cx="200" cy="160" r="90" fill="{fg}"/>',
    "block": '<rect x="110" y="70" width="180" height="180" rx="36" fill="{fg}"/>',
    "diamond": '<polygon points="200,60 300,160 200,260 100,160" fill="{fg}"/>',
}
_SHAPE_BY_CATEGORY = {
    "Tents": "triangle",
    "Backpacks": "block",
    "Lighting": "circle",
    "Hiking gear": "diamond",
}


def _hue(sku: str) -> int:
    return int.from_bytes(hashlib.sha256(sku.encode()).digest()[:2], "big") % 360


def _shape(sku: str, category: str) -> str:
    names = sorted(_SHAPES)
    name = _SHAPE_BY_CATEGORY.get(category) or names[_hue(sku + category) % len(names)]
    return _SHAPES[name]


def product_picture(sku: str, title: str, category: str = "") -> str:
    """A square SVG: background colour from the sku, a shape, and the title below it."""
    hue = _hue(sku)
    lines = wrap(title, width=20)[:3]
    text = "".join(
        f'<tspan x="200" dy="{0 if n == 0 else 30}">{escape(line)}</tspan>'
        for n, line in enumerate(lines)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_SIZE}" height="{_SIZE}" '
        f'viewBox="0 0 {_SIZE} {_SIZE}" role="img" aria-label="{escape(title)}">'
        f'<rect width="{_SIZE}" height="{_SIZE}" fill="hsl({hue},60%,86%)"/>'
        + _shape(sku, category).format(fg=f"hsl({hue},45%,40%)")
        + f'<text x="200" y="{305 - 15 * (len(lines) - 1)}" text-anchor="middle" '
        f'font-family="system-ui,-apple-system,Segoe UI,sans-serif" font-size="24" '
        f'font-weight="600" fill="hsl({hue},50%,18%)">{text}</text></svg>'
    )
