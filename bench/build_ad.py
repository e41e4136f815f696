"""What `build_ad` costs (sealing an ad's links, filling the kept creative), this tree against
the `build_ad` of another commit, timed alternately in one process so the figures compare:

    .venv/bin/python bench/build_ad.py [--ref main] [--number 5000] [--rounds 5]

The other commit's `adserver/delivery/served_ad.py` is loaded from git beside this tree's (it
imports this tree's `Signer` and renderer). The ad: the demo catalog's first products, each
size with its most products, no Redis.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from adserver.core.decision import Decision, Pick, Slot
from adserver.core.product import Product
from adserver.delivery import served_ad
from adserver.delivery.tokens import Signer
from adserver.demo.catalog import demo_catalog
from creatives.renderer import CreativeRenderer

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://ads.example.com"


def module_at(ref: str, directory: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{ref}:adserver/delivery/served_ad.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = directory / "served_ad_then.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("served_ad_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["served_ad_then"] = module
    spec.loader.exec_module(module)
    return module


def decision(count: int) -> Decision:
    rows = demo_catalog("https://www.shop-example.com")[:count]
    picks = tuple(
        Pick(
            Product(row["id"], row["title"], row["link"], row["image_link"], Decimal(9), "EUR"),
            "popular" if n else "recent",
        )
        for n, row in enumerate(rows)
    )
    return Decision("shop", "default", picks)


def seconds(build: Callable[[], Any], number: int, *, html: bool) -> float:
    """`number` ads built (`html`: and their creatives filled, what `/ad` asks for)."""
    if html:
        return timeit.timeit(lambda: build().html(), number=number)
    return timeit.timeit(build, number=number)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main")
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    signer, renderer = Signer(b"bench-build-ad-secret-0123456789"), CreativeRenderer()
    with tempfile.TemporaryDirectory() as tmp:
        then = module_at(args.ref, Path(tmp))
        print(
            f"| size | products | build_ad, {args.ref} µs | this tree µs | ratio "
            f"| with the creative filled, {args.ref} µs | this tree µs | ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for size, fmt in renderer.formats.items():
            ad, slot = decision(fmt.max_products), Slot("news", size, fmt.max_products)
            runs = {
                "then": partial(then.build_ad, ad, slot, BASE, signer, renderer),
                "now": partial(served_ad.build_ad, ad, slot, BASE, signer, renderer),
            }
            cells = []
            for html in (False, True):
                best = {"then": float("inf"), "now": float("inf")}
                for _ in range(args.rounds):  # alternated: a busy moment hits both
                    for name, run in runs.items():
                        best[name] = min(best[name], seconds(run, args.number, html=html))
                then_us, now_us = (best[k] / args.number * 1e6 for k in ("then", "now"))
                cells.append(f"{then_us:.1f} | {now_us:.1f} | {now_us / then_us:.2f}")
            print(f"| {size} | {fmt.max_products} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
