"""What rendering a creative costs, per size with its most products: Jinja rendering the whole
document (what every ad paid before issue 15, and what the first ad of a size, advertiser and
products still pays) against filling the kept document with the request's links, and what
compressing the answer adds. One process, one run, so the figures compare.

    .venv/bin/python bench/render.py [--number 5000]
"""

from __future__ import annotations

import argparse
import timeit
import zlib
from collections.abc import Callable

from adserver.demo.catalog import demo_catalog
from creatives.renderer import CreativeProduct, CreativeRenderer

TOKEN = "A" * 212  # a click token's length today
BEACON = "/i/" + "B" * 110


def shown(count: int) -> list[CreativeProduct]:
    rows = demo_catalog("https://www.shop-example.com")[:count]
    return [
        CreativeProduct(
            title=row["title"],
            price_text=f"€{row['price']}",
            image_url=row["image_link"],
            click_url=f"/c/{TOKEN}{n}",
            brand=row.get("brand", ""),
        )
        for n, row in enumerate(rows)
    ]


def best_us(run: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(run, number=number, repeat=3)) / number * 1e6


Run = Callable[[], object]


def timed(renderer: CreativeRenderer, size: str, count: int) -> tuple[Run, Run, Run, bytes]:
    """A render never kept before (a new advertiser each time), one kept, the gzip of it."""
    products = shown(count)
    misses = iter(range(10**9))

    def miss() -> str:
        return renderer.render(
            size, products, advertiser=f"shop{next(misses)}", impression_url=BEACON
        )

    def hit() -> str:
        return renderer.render(size, products, advertiser="shop", impression_url=BEACON)

    body = hit().encode()

    def compress() -> bytes:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + 12, 5)
        return compressor.compress(body) + compressor.flush()

    return miss, hit, compress, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000, help="renders per measurement")
    args = parser.parse_args(argv)
    renderer = CreativeRenderer()
    print(
        "| size | products | Jinja, whole document µs | kept document filled µs | gzip µs | bytes |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for size, fmt in renderer.formats.items():
        miss, hit, compress, body = timed(renderer, size, fmt.max_products)
        print(
            f"| {size} | {fmt.max_products} | {best_us(miss, args.number):.1f} "
            f"| {best_us(hit, args.number):.1f} | {best_us(compress, args.number):.1f} "
            f"| {len(body)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
